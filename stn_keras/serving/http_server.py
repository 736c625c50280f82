"""`run_server`: uvicorn with request timeouts, an idle timeout and a connection cap.

Uvicorn closes a keep-alive connection left idle after an answer
(``timeout_keep_alive``), but keeps forever a connection that never sends a
complete request head, or whose body never ends: silent clients and clients
sending a byte at a time would hold sockets and memory.
`request_timeout_protocol` closes such connections.
"""

from stn_keras.extras import import_extra

DEFAULT_HEADER_TIMEOUT_S = 5.0
# Generous: a 16 MiB body over a slow link takes a while.
DEFAULT_BODY_TIMEOUT_S = 30.0
DEFAULT_KEEP_ALIVE_TIMEOUT_S = 5.0
DEFAULT_MAX_CONNECTIONS = 256


def request_timeout_protocol(header_timeout_s, body_timeout_s=DEFAULT_BODY_TIMEOUT_S):
    """Uvicorn's h11 protocol class, closing connections slow to send a request.

    A connection must deliver a complete request head within
    ``header_timeout_s`` of being opened and of each answer, and the body
    within ``body_timeout_s`` of its head; a connection that does not is
    closed (there is no one left to answer). A request whose body has
    arrived is never interrupted while it is answered.

    Args:
        header_timeout_s: seconds allowed for a request head.
        body_timeout_s: seconds allowed for a request body.

    Returns:
        A subclass of ``uvicorn.protocols.http.h11_impl.H11Protocol``.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class RequestTimeoutProtocol(H11Protocol):
        def connection_made(self, transport):
            # "header" and "body": the timer of the part of a request awaited.
            self._timers = {}
            super().connection_made(transport)
            self._start_timer("header", header_timeout_s, self._header_timeout_expired)

        def on_response_complete(self):
            super().on_response_complete()
            self._start_timer("header", header_timeout_s, self._header_timeout_expired)

        def connection_lost(self, exc):
            for part in list(self._timers):
                self._cancel_timer(part)
            super().connection_lost(exc)

        def handle_events(self):
            super().handle_events()
            if not self._body_incoming():
                self._cancel_timer("body")
            elif "body" not in self._timers:
                self._start_timer("body", body_timeout_s, self._body_timeout_expired)

        def _start_timer(self, part, delay_s, callback):
            self._cancel_timer(part)
            self._timers[part] = self.loop.call_later(delay_s, callback)

        def _cancel_timer(self, part):
            timer = self._timers.pop(part, None)
            if timer is not None:
                timer.cancel()

        def _close(self):
            if not self.transport.is_closing():
                self.transport.close()

        def _body_incoming(self):
            return (
                self.cycle is not None
                and self.cycle.more_body
                and not self.cycle.response_complete
            )

        def _body_timeout_expired(self):
            self._timers.pop("body", None)
            if self._body_incoming():
                self._close()

        def _header_timeout_expired(self):
            self._timers.pop("header", None)
            # A request head arrived: the timer is armed again after its answer.
            if self.cycle is None or self.cycle.response_complete:
                self._close()

    return RequestTimeoutProtocol


def run_server(
    app,
    host,
    port,
    header_timeout_s=DEFAULT_HEADER_TIMEOUT_S,
    body_timeout_s=DEFAULT_BODY_TIMEOUT_S,
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
        body_timeout_s: seconds a connection has to send a request body
            after its head.
        keep_alive_timeout_s: seconds an idle keep-alive connection stays
            open after an answer.
        max_connections: connections and requests in progress beyond which
            new requests are answered 503 (uvicorn's ``limit_concurrency``).
        log_level: uvicorn's log level.

    Raises:
        ModuleNotFoundError: uvicorn is not installed (the ``serving`` extra).
    """
    uvicorn = import_extra("uvicorn", "serving", "The HTTP server")

    uvicorn.run(
        app,
        host=host,
        port=port,
        http=request_timeout_protocol(header_timeout_s, body_timeout_s),
        timeout_keep_alive=keep_alive_timeout_s,
        limit_concurrency=max_connections,
        log_level=log_level,
    )
