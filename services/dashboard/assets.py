"""The dashboard's files, read from the installed package, and the headers they go out with.

Both servers of the page (the loopback proxy and the aggregator's ``/dashboard/`` route)
serve exactly these names and nothing else, so no request path ever reaches the file system.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

from shared.errors import NotFoundError

INDEX = "index.html"
_TYPES = {
    INDEX: "text/html; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "model.js": "text/javascript; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
}
ASSET_NAMES = frozenset(_TYPES)

SECURITY_HEADERS = {
    # Only the page's own files run: no inline script, no CDN, no framing by another site.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
"""Sent with every dashboard file and every proxied answer."""


@dataclass(frozen=True)
class Asset:
    name: str
    content_type: str
    body: bytes


@cache
def asset(name: str) -> Asset:
    """The packaged file ``name``; NotFoundError for anything not in ``ASSET_NAMES``."""
    if name not in _TYPES:
        raise NotFoundError(f"the dashboard has no file {name!r}")
    body = resources.files("services.dashboard").joinpath("static", name).read_bytes()
    return Asset(name, _TYPES[name], body)
