"""Global model versions, downloadable by hash (immutable, so the hash is the ETag)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from services.aggregator.api.deps import CurrentIdentity, FederationDep

router = APIRouter(tags=["models"])


@router.get("/models/{sha256}", response_model=None)
async def download_model(
    sha256: str, request: Request, _: CurrentIdentity, federation: FederationDep
) -> Response:
    etag = f'"{sha256}"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=31536000, immutable"}
    if request.headers.get("if-none-match") == etag:
        await run_in_threadpool(federation.model_path, sha256)  # 404 for unknown versions
        return Response(status_code=304, headers=headers)
    data = await run_in_threadpool(federation.model_bytes, sha256)
    headers["Content-Length"] = str(len(data))
    return StreamingResponse(_chunks(data), media_type="application/octet-stream", headers=headers)


CHUNK = 1 << 20


async def _chunks(data: bytes) -> AsyncIterator[memoryview]:
    """Views of the one cached copy, sent a chunk at a time.

    Handing the whole model to the transport at once would have it encrypted into that
    connection's send buffer in one go: every concurrent download then held its own
    ciphertext copy of the model (about 19 MB each). Sent by chunk, each ``send`` waits
    for the connection to drain, so a slow reader holds one chunk, not a model.
    """
    view = memoryview(data)
    for start in range(0, len(view), CHUNK):
        yield view[start : start + CHUNK]
