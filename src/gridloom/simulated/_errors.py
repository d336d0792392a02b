"""The simulated endpoint's request error (answered 400 in the API's error shape)."""

from __future__ import annotations

__all__ = ["RequestError"]


class RequestError(Exception):
    """The request is not valid for the API, or asks for what the simulated endpoint does not
    support (answered 400).

    Attributes:
        message: what is wrong, for the client.
        param: the offending field, when there is one.
        code: a machine-readable code (OpenAI's ``error.code``), when there is one.
    """

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        self.message = message
        self.param = param
        self.code = code
        super().__init__(message)
