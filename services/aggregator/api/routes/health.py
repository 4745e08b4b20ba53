"""Liveness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from services.aggregator.api.deps import CurrentIdentity, FederationDep
from shared.schemas import Health, RoundState

router = APIRouter(tags=["health"])
VERSION = "0.1.0"


@router.get("/health")
def health(_: CurrentIdentity) -> Health:
    return Health(status="ok", version=VERSION)


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(_: CurrentIdentity, federation: FederationDep) -> str:
    """Prometheus text format: rounds by state and updates accepted, for the newest run."""
    rounds = federation.list_rounds()
    lines = [
        "# HELP fedseg_rounds Rounds of the newest run by state.",
        "# TYPE fedseg_rounds gauge",
    ]
    for state in RoundState:
        count = sum(1 for r in rounds if r.state == state)
        lines.append(f'fedseg_rounds{{state="{state}"}} {count}')
    lines += [
        "# HELP fedseg_updates_accepted Updates accepted in the newest run.",
        "# TYPE fedseg_updates_accepted counter",
        f"fedseg_updates_accepted {sum(len(r.reported_nodes) for r in rounds)}",
    ]
    return "\n".join(lines) + "\n"
