"""Uploads: a node's update (safetensors, streamed) or its evaluation report (JSON)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from starlette.concurrency import run_in_threadpool

from services.aggregator.api.deps import (
    ChangesDep,
    CurrentNode,
    FederationDep,
    RoundNumber,
    RunId,
    SettingsDep,
)
from services.aggregator.core.blobs import IncomingBlob
from services.aggregator.core.notify import Signal
from services.aggregator.state.updates import Received
from shared.errors import InvalidRequestError, PayloadTooLargeError
from shared.schemas import Decline, EvaluationReport, UpdateReceipt

router = APIRouter(prefix="/runs/{run_id}/rounds/{number}", tags=["updates"])


def _answer(
    receipt: UpdateReceipt, new: bool, response: Response, changes: Signal
) -> UpdateReceipt:
    """201 and a wake-up for something newly recorded; 200 for a repeat of the same bytes."""
    if new:
        changes.fire()
    else:
        response.status_code = status.HTTP_200_OK
    return receipt


@router.put("/update", status_code=status.HTTP_201_CREATED)
async def upload_update(
    run_id: RunId,
    number: RoundNumber,
    request: Request,
    response: Response,
    node: CurrentNode,
    federation: FederationDep,
    settings: SettingsDep,
    changes: ChangesDep,
) -> UpdateReceipt:
    """201 for a newly accepted update, 200 for the same bytes again, 409 for other bytes."""
    if request.headers.get("content-type", "").split(";")[0] != "application/octet-stream":
        raise InvalidRequestError("an update must be sent as application/octet-stream")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > settings.max_update_bytes:
        raise PayloadTooLargeError(
            f"update body of {declared} bytes exceeds the limit of "
            f"{settings.max_update_bytes} bytes; nothing was stored"
        )
    incoming = IncomingBlob(federation.blobs, settings.max_update_bytes)
    try:
        async for chunk in request.stream():
            await incoming.write(chunk)
        sha256 = await run_in_threadpool(incoming.finish)
        received = Received(incoming.path, sha256, incoming.size)
        receipt, new = await run_in_threadpool(
            federation.accept_update, node, run_id, number, received
        )
    finally:
        incoming.discard()  # a no-op once the blob store has taken the file
    return _answer(receipt, new, response, changes)


@router.post("/decline", status_code=status.HTTP_201_CREATED)
def decline(
    run_id: RunId,
    number: RoundNumber,
    body: Decline,
    response: Response,
    node: CurrentNode,
    federation: FederationDep,
    changes: ChangesDep,
) -> UpdateReceipt:
    """The node releases nothing this round (e.g. its privacy budget is spent), and says why."""
    receipt, new = federation.accept_decline(node, run_id, number, body)
    return _answer(receipt, new, response, changes)


@router.post("/evaluation", status_code=status.HTTP_201_CREATED)
def report_evaluation(
    run_id: RunId,
    number: RoundNumber,
    body: EvaluationReport,
    response: Response,
    node: CurrentNode,
    federation: FederationDep,
    changes: ChangesDep,
) -> UpdateReceipt:
    receipt, new = federation.accept_evaluation(node, run_id, number, body)
    return _answer(receipt, new, response, changes)
