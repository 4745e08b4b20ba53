"""No browser may change the federation: a guard against cross-site request forgery.

An operator who imported the admin certificate into a browser (to open the aggregator's own
dashboard) makes that browser present it to the aggregator from any tab, so a hostile page
could POST ``/runs/1/abort`` in the operator's name. fedseg's own clients (nodes,
``fedseg-admin``) never send ``Origin`` or ``Sec-Fetch-*``; browsers send them on every
such request. So a request that changes state and carries them is refused: the dashboard
is read-only, and steering is done with ``fedseg-admin``.
"""

from __future__ import annotations

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.errors import BrowserWriteRefusedError

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def from_a_browser(headers: dict[bytes, bytes]) -> bool:
    fetch_site = headers.get(b"sec-fetch-site")
    return b"origin" in headers or (fetch_site is not None and fetch_site != b"none")


class BrowserWriteGuard:
    """ASGI middleware: refuse state-changing requests that a browser sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") not in SAFE_METHODS:
            headers = dict(scope.get("headers") or [])
            if from_a_browser(headers):
                refused = BrowserWriteRefusedError
                response = JSONResponse(
                    {
                        "detail": f"{scope.get('method')} from a web browser is refused: the "
                        "dashboard is read-only; steer the federation with fedseg-admin",
                        "code": refused.code,
                    },
                    status_code=refused.status,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
