"""`ServingError`: a request the server refuses, with its HTTP status."""


class ServingError(Exception):
    """A refused request; the server answers ``{"error": message}``.

    Args:
        status_code: the HTTP status of the answer (4xx for the client's
            mistakes).
        message: what was wrong and how to fix it, for the client.
        headers: extra response headers (``Allow`` for a 405), or ``None``.
    """

    def __init__(self, status_code, message, headers=None):
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.headers = headers
