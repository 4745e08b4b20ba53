"""The operator dashboard under mutual TLS, for browsers that hold an imported certificate.

Any certified identity may read it, as it may read the status API the page polls; the
files come from the installed package (``services.dashboard``), never from a CDN.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from services.aggregator.api.deps import CurrentIdentity
from services.dashboard.assets import INDEX, SECURITY_HEADERS, asset

router = APIRouter(prefix="/dashboard", tags=["dashboard"], include_in_schema=False)


@router.get("/")
def index(_: CurrentIdentity) -> Response:
    return _response(INDEX)


@router.get("/{name}")
def dashboard_file(name: str, _: CurrentIdentity) -> Response:
    """One of the page's files; any other name is a 404 (NotFoundError)."""
    return _response(name)


def _response(name: str) -> Response:
    found = asset(name)
    return Response(found.body, media_type=found.content_type, headers=SECURITY_HEADERS)
