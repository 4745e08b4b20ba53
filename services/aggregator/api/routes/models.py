"""Global model versions, downloadable by hash (immutable, so the hash is the ETag)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
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
    return Response(data, media_type="application/octet-stream", headers=headers)
