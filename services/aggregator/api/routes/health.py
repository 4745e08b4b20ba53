"""Liveness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from services.aggregator.api.deps import CurrentIdentity
from shared.schemas import Health

router = APIRouter(tags=["health"])
VERSION = "0.1.0"


@router.get("/health")
def health(_: CurrentIdentity) -> Health:
    return Health(status="ok", version=VERSION)


@router.get("/metrics", response_class=Response)
def metrics(_: CurrentIdentity, request: Request) -> Response:
    """Prometheus text format (services/aggregator/core/metrics.py lists the series)."""
    registry: CollectorRegistry = request.app.state.metrics
    # The 0.0.4 text format: what every Prometheus 2.x scraper (Debian's included) reads.
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_PLAIN_0_0_4)
