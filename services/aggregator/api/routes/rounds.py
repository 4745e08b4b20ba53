"""Round status: state, participants, deadline, metrics."""

from __future__ import annotations

from fastapi import APIRouter

from services.aggregator.api.deps import (
    CurrentIdentity,
    FederationDep,
    RoundNumber,
    RunFilter,
    RunId,
)
from shared.schemas import RoundView

router = APIRouter(tags=["rounds"])


@router.get("/rounds")
def list_rounds(
    _: CurrentIdentity, federation: FederationDep, run_id: RunFilter = None
) -> list[RoundView]:
    """Rounds of ``run_id``, or of the newest run."""
    return federation.list_rounds(run_id)


@router.get("/runs/{run_id}/rounds")
def list_run_rounds(
    run_id: RunId, _: CurrentIdentity, federation: FederationDep
) -> list[RoundView]:
    return federation.list_rounds(run_id)


@router.get("/runs/{run_id}/rounds/{number}")
def get_round(
    run_id: RunId, number: RoundNumber, _: CurrentIdentity, federation: FederationDep
) -> RoundView:
    return federation.get_round(run_id, number)
