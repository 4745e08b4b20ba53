"""Bounds on what a request may make the aggregator hold before it is refused.

- ``JsonBodyLimit``: every request body except an update upload (which streams to disk
  under its own limit, services.aggregator.core.blobs) is capped while it streams in: a
  declared Content-Length over the cap is refused before a byte is read, a chunked body
  as soon as it passes the cap. The refusal is a 413 that names the limit and closes the
  connection, so the server stops reading what the client goes on sending.
- ``validation_error``: a 422 names each bad field and why, with at most a short excerpt
  of the input, never the input itself (a 256 MiB string is not echoed back).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import PayloadTooLargeError, RequestValidationFailedError, TooManyRequestsError

EXCERPT = 80
"""How many characters of a refused input a 422 quotes."""


def _too_large(limit: int) -> str:
    return f"request body exceeds the limit of {limit} bytes for this endpoint; nothing was read"


class JsonBodyLimit:
    """ASGI middleware: cap every non-upload request body at ``limit`` bytes."""

    def __init__(self, app: ASGIApp, limit: int, exempt_suffix: str = "/update") -> None:
        self.app = app
        self.limit = limit
        self.exempt_suffix = exempt_suffix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].endswith(self.exempt_suffix):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            response = JSONResponse(
                {"detail": _too_large(self.limit), "code": PayloadTooLargeError.code},
                status_code=PayloadTooLargeError.status,
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # An HTTPException, which FastAPI's body parsing lets through (any other
                    # exception there becomes a 400); main.HTTP_CODES gives it its code.
                    raise HTTPException(413, _too_large(self.limit), {"Connection": "close"})
            return message

        await self.app(scope, limited, send)


def _excerpt(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= EXCERPT else f"{text[:EXCERPT]}… ({len(text)} characters)"


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """A 422 that says which fields are wrong and why, quoting at most an excerpt."""
    assert isinstance(exc, RequestValidationError)
    detail = [
        {
            "loc": list(error.get("loc", ())),
            "msg": str(error.get("msg", ""))[:200],
            "type": str(error.get("type", "")),
            "input": _excerpt(error.get("input")),
        }
        for error in exc.errors()[:20]
    ]
    failure = RequestValidationFailedError
    return JSONResponse({"detail": detail, "code": failure.code}, status_code=failure.status)


class InFlight:
    """At most ``limit`` concurrent requests of one kind per certificate holder.

    A node needs one long-poll at a time; a broken or hostile one that opens hundreds
    would keep the worker threads busy re-reading its task. Used from the event loop
    only, so a plain dict is enough.
    """

    def __init__(self, limit: int, what: str) -> None:
        self.limit = limit
        self.what = what
        self._held: dict[str, int] = {}

    @contextmanager
    def slot(self, holder: str) -> Iterator[None]:
        held = self._held.get(holder, 0)
        if held >= self.limit:
            raise TooManyRequestsError(
                f"{holder} already has {held} {self.what} open (at most {self.limit}); "
                "wait for one to finish"
            )
        self._held[holder] = held + 1
        try:
            yield
        finally:
            left = self._held[holder] - 1
            if left:
                self._held[holder] = left
            else:
                del self._held[holder]
