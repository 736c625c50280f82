"""`run_server`: uvicorn with header and idle timeouts and a connection cap.

Uvicorn closes a keep-alive connection left idle after an answer
(``timeout_keep_alive``), but keeps forever a connection that never sends a
complete request head: silent clients and clients sending their headers a
byte at a time would hold sockets and memory. `header_timeout_protocol`
closes such connections.
"""

DEFAULT_HEADER_TIMEOUT_S = 5.0
DEFAULT_KEEP_ALIVE_TIMEOUT_S = 5.0
DEFAULT_MAX_CONNECTIONS = 256


def header_timeout_protocol(header_timeout_s):
    """Uvicorn's h11 protocol class, closing connections slow to send a request head.

    A connection must deliver a complete request head within
    ``header_timeout_s`` of being opened and of each answer; a request
    being answered is never interrupted.

    Args:
        header_timeout_s: seconds allowed for a request head.

    Returns:
        A subclass of ``uvicorn.protocols.http.h11_impl.H11Protocol``.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutProtocol(H11Protocol):
        _header_timer = None

        def connection_made(self, transport):
            super().connection_made(transport)
            self._arm_header_timer()

        def on_response_complete(self):
            super().on_response_complete()
            self._arm_header_timer()

        def connection_lost(self, exc):
            self._cancel_header_timer()
            super().connection_lost(exc)

        def _arm_header_timer(self):
            self._cancel_header_timer()
            self._header_timer = self.loop.call_later(
                header_timeout_s, self._header_timeout_expired
            )

        def _cancel_header_timer(self):
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timeout_expired(self):
            self._header_timer = None
            # A request head arrived: the timer is armed again after its answer.
            if self.cycle is not None and not self.cycle.response_complete:
                return
            if not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol


def run_server(
    app,
    host,
    port,
    header_timeout_s=DEFAULT_HEADER_TIMEOUT_S,
    keep_alive_timeout_s=DEFAULT_KEEP_ALIVE_TIMEOUT_S,
    max_connections=DEFAULT_MAX_CONNECTIONS,
    log_level="info",
):
    """Runs ``app`` with uvicorn until SIGTERM or SIGINT.

    Uvicorn answers SIGTERM and SIGINT by finishing the requests in flight.

    Args:
        app: the ASGI application.
        host: address to bind.
        port: port to bind.
        header_timeout_s: seconds a connection has to send a complete
            request head, after opening and after each answer.
        keep_alive_timeout_s: seconds an idle keep-alive connection stays
            open after an answer.
        max_connections: connections and requests in progress beyond which
            new requests are answered 503 (uvicorn's ``limit_concurrency``).
        log_level: uvicorn's log level.
    """
    import uvicorn

    uvicorn.run(
        app,
        host=host,
        port=port,
        http=header_timeout_protocol(header_timeout_s),
        timeout_keep_alive=keep_alive_timeout_s,
        limit_concurrency=max_connections,
        log_level=log_level,
    )
