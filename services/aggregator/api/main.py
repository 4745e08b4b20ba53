"""The aggregator's FastAPI application: routers, error mapping, the round ticker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from services.aggregator.api.browsers import BrowserWriteGuard
from services.aggregator.api.limits import JsonBodyLimit, validation_error
from services.aggregator.api.openapi import document_errors
from services.aggregator.api.routes import (
    dashboard,
    health,
    models,
    nodes,
    rounds,
    runs,
    tasks,
    updates,
)
from services.aggregator.core.config import AggregatorSettings
from services.aggregator.core.looplag import LoopLag
from services.aggregator.core.metrics import Traffic, TrafficMiddleware, new_registry
from services.aggregator.core.notify import Signal
from services.aggregator.federation import Federation
from shared import errors
from shared.schemas import API_PREFIX

log = logging.getLogger("fedseg.aggregator")

RETRY_AFTER_S = 30
"""What a storage failure's ``Retry-After`` tells the client to wait."""
HTTP_CODES = {
    404: "no_such_path",
    405: "method_not_allowed",
    errors.PayloadTooLargeError.status: errors.PayloadTooLargeError.code,
}
"""Wire codes of the answers the framework gives by itself (not from a FedsegError)."""


def error_response(
    status: int, code: str, detail: object, headers: dict[str, str] | None = None
) -> JSONResponse:
    """Every error body: the human ``detail`` and the machine ``code`` clients act on."""
    return JSONResponse({"detail": detail, "code": code}, status_code=status, headers=headers)


async def _fedseg_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.FedsegError)
    chain = ((request.scope.get("extensions") or {}).get("tls") or {}).get("client_cert_chain")
    identity = "certified caller" if chain else "?"
    log.warning(
        "%s %s -> %d %s (%s): %s",
        request.method, request.url.path, exc.status, exc.code, identity, exc,
    )  # fmt: skip
    _count_rejection(request, exc.code)
    return error_response(exc.status, exc.code, str(exc), _headers_for(exc))


def _count_rejection(request: Request, code: str) -> None:
    traffic: Traffic = request.app.state.traffic
    traffic.reject(request.scope, code)


def _headers_for(exc: errors.FedsegError) -> dict[str, str] | None:
    """Storage failures say when to retry; a too-large body ends the connection, so the
    server stops reading what the client goes on sending."""
    if isinstance(exc, errors.StorageError):
        return {"Retry-After": str(RETRY_AFTER_S)}
    if isinstance(exc, errors.TooManyRequestsError):
        return {"Retry-After": "1"}
    if isinstance(exc, errors.PayloadTooLargeError):
        return {"Connection": "close"}
    return None


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    _count_rejection(request, code)
    return error_response(exc.status_code, code, exc.detail, dict(exc.headers or {}) or None)


async def _client_gone(request: Request, exc: Exception) -> Response:
    """The client hung up (or was cut off by a connection deadline) mid-request."""
    log.warning("%s %s: the client disconnected before its request was complete; "
                "nothing was stored", request.method, request.url.path)  # fmt: skip
    return Response(status_code=499)  # nobody reads it: the connection is gone


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    _count_rejection(request, errors.RequestValidationFailedError.code)
    return await validation_error(request, exc)


async def _ticker(app: FastAPI) -> None:
    """Drives deadlines and aggregation; woken at once by every accepted update."""
    federation: Federation = app.state.federation
    changes: Signal = app.state.changes
    settings: AggregatorSettings = app.state.settings
    while True:
        try:
            changed = await run_in_threadpool(federation.advance)
        except Exception:
            log.exception("advancing the round state failed; retrying")
            changed = False
        if changed:
            changes.fire()
            continue
        await changes.wait(settings.tick_s)


def create_app(settings: AggregatorSettings, federation: Federation) -> FastAPI:
    """The app over an already migrated and recovered ``federation``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.changes.bind(asyncio.get_running_loop())
        tasks = [asyncio.create_task(_ticker(app)), asyncio.create_task(app.state.loop_lag.run())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # No /docs or /redoc: they load their scripts from a CDN and render blank offline. The
    # schema stays at /openapi.json; the operator's page is /dashboard/ (served from here).
    app = FastAPI(
        title="fedseg aggregator",
        version=health.VERSION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.federation = federation
    app.state.changes = Signal()
    app.add_exception_handler(errors.FedsegError, _fedseg_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_middleware(JsonBodyLimit, limit=settings.max_json_bytes)
    app.add_middleware(BrowserWriteGuard)
    app.state.metrics, app.state.traffic = new_registry(federation)
    app.state.loop_lag = LoopLag(app.state.metrics)
    app.add_middleware(TrafficMiddleware, traffic=app.state.traffic)  # outermost: sees 413s
    api = [m.router for m in (health, runs, rounds, nodes, models, tasks, updates)]
    for router in api:
        app.include_router(router, prefix=API_PREFIX)
    app.include_router(dashboard.router)  # the page, outside the API prefix
    document_errors(app, api)
    return app
