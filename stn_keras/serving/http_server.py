"""`run_server`: uvicorn with request timeouts, an idle timeout and a connection cap.

Uvicorn closes a keep-alive connection left idle after an answer
(``timeout_keep_alive``) and caps connections (``limit_concurrency``), but
keeps forever a connection that never sends a complete request head, or
whose body never ends: silent clients and clients sending a byte at a time
would hold sockets and memory. No uvicorn setting bounds that time, and an
ASGI middleware only runs once a head has arrived, so
`request_timeout_protocol` wraps uvicorn's HTTP protocol: it passes every
call of the ``asyncio.Protocol`` interface through, follows the client's
bytes with its own ``h11`` parser to see where each request head and body
ends, and closes the connection when one is late. It relies on nothing of
uvicorn but that interface and the constructor arguments uvicorn gives any
``http`` protocol class.
"""

from stn_keras.extras import import_extra

DEFAULT_HEADER_TIMEOUT_S = 5.0
# Generous: a 16 MiB body over a slow link takes a while.
DEFAULT_BODY_TIMEOUT_S = 30.0
DEFAULT_KEEP_ALIVE_TIMEOUT_S = 5.0
DEFAULT_MAX_CONNECTIONS = 256


def request_timeout_protocol(header_timeout_s, body_timeout_s=DEFAULT_BODY_TIMEOUT_S):
    """An ``http`` protocol class for uvicorn closing connections slow to send a request.

    A connection must deliver a complete request head within
    ``header_timeout_s`` of being opened and of the first byte of each later
    request (between requests, uvicorn's keep-alive timeout closes an idle
    connection), and the body within ``body_timeout_s`` of its head; a
    connection that does not is closed (there is no one left to answer). A
    request whose body has arrived is never interrupted while it is
    answered.

    Args:
        header_timeout_s: seconds allowed for a request head.
        body_timeout_s: seconds allowed for a request body.

    Returns:
        An ``asyncio.Protocol`` class wrapping uvicorn's h11 protocol, for
        ``uvicorn.run(http=...)``.
    """
    import asyncio

    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class RequestTimeoutProtocol(asyncio.Protocol):
        def __init__(self, config, server_state, app_state, _loop=None):
            self.inner = H11Protocol(config, server_state, app_state, _loop)
            self.loop = _loop or asyncio.get_event_loop()
            self.max_head_bytes = config.h11_max_incomplete_event_size
            self.parser = self._new_parser()
            self.transport = None
            # "header" and "body": the timer of the part of a request awaited.
            self.timers = {}

        def _new_parser(self):
            if self.max_head_bytes is None:
                return h11.Connection(h11.SERVER)
            return h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_head_bytes)

        def connection_made(self, transport):
            self.transport = transport
            self._start_timer("header", header_timeout_s)
            self.inner.connection_made(transport)

        def data_received(self, data):
            if self.parser is not None:
                self._follow(data)
            self.inner.data_received(data)

        def eof_received(self):
            return self.inner.eof_received()

        def pause_writing(self):
            self.inner.pause_writing()

        def resume_writing(self):
            self.inner.resume_writing()

        def connection_lost(self, exc):
            for part in list(self.timers):
                self._cancel_timer(part)
            self.inner.connection_lost(exc)

        def _follow(self, data):
            """Starts and stops the timers where heads and bodies end."""
            self.parser.receive_data(data)
            while True:
                try:
                    event = self.parser.next_event()
                except h11.RemoteProtocolError:
                    # Uvicorn answers the malformed request and closes.
                    self.parser = None
                    return
                if event is h11.NEED_DATA:
                    break
                if event is h11.PAUSED:
                    # A request ended; the bytes after it start the next one.
                    leftover, _ = self.parser.trailing_data
                    self.parser = self._new_parser()
                    self.parser.receive_data(leftover)
                elif isinstance(event, h11.Request):
                    self._cancel_timer("header")
                    self._start_timer("body", body_timeout_s)
                elif isinstance(event, h11.EndOfMessage):
                    self._cancel_timer("body")
                elif isinstance(event, h11.ConnectionClosed):
                    return
            if self.parser.their_state is h11.IDLE and self.parser.trailing_data[0]:
                if "header" not in self.timers:
                    self._start_timer("header", header_timeout_s)

        def _start_timer(self, part, delay_s):
            self._cancel_timer(part)
            self.timers[part] = self.loop.call_later(delay_s, self._expired, part)

        def _cancel_timer(self, part):
            timer = self.timers.pop(part, None)
            if timer is not None:
                timer.cancel()

        def _expired(self, part):
            self.timers.pop(part, None)
            if not self.transport.is_closing():
                self.transport.close()

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
            request head, after opening and after the first byte of each
            later request.
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
