"""The aggregator's FastAPI application: routers, error mapping, the round ticker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from services.aggregator.api.limits import JsonBodyLimit, validation_error
from services.aggregator.api.routes import health, models, nodes, rounds, runs, tasks, updates
from services.aggregator.core.config import AggregatorSettings
from services.aggregator.core.notify import Signal
from services.aggregator.federation import Federation
from shared import errors
from shared.schemas import API_PREFIX

log = logging.getLogger("fedseg.aggregator")

_STATUS: tuple[tuple[type[errors.FedsegError], int], ...] = (
    (errors.InvalidRequestError, 400),
    (errors.PermissionDeniedError, 403),
    (errors.NotFoundError, 404),
    (errors.ConflictError, 409),
    (errors.PayloadTooLargeError, 413),
    (errors.UpdateRejectedError, 422),
    (errors.PolicyRejectedError, 422),
    (errors.StorageFullError, 507),
    (errors.StorageError, 503),
)
RETRY_AFTER_S = 30
"""What a storage failure's ``Retry-After`` tells the client to wait."""


def status_of(exc: errors.FedsegError) -> int:
    for kind, code in _STATUS:
        if isinstance(exc, kind):
            return code
    return 500


async def _fedseg_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.FedsegError)
    code = status_of(exc)
    identity = "?"
    chain = ((request.scope.get("extensions") or {}).get("tls") or {}).get("client_cert_chain")
    if chain:
        identity = "certified caller"
    log.warning("%s %s -> %d (%s): %s", request.method, request.url.path, code, identity, exc)
    headers = {"Retry-After": str(RETRY_AFTER_S)} if isinstance(exc, errors.StorageError) else None
    return JSONResponse({"detail": str(exc)}, status_code=code, headers=headers)


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
        task = asyncio.create_task(_ticker(app))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(title="fedseg aggregator", version=health.VERSION, lifespan=lifespan)
    app.state.settings = settings
    app.state.federation = federation
    app.state.changes = Signal()
    app.add_exception_handler(errors.FedsegError, _fedseg_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_middleware(JsonBodyLimit, limit=settings.max_json_bytes)
    for module in (health, runs, rounds, nodes, models, tasks, updates):
        app.include_router(module.router, prefix=API_PREFIX)
    return app
