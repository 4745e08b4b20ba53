"""Training runs: admins create and steer them; anyone authenticated may read them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from services.aggregator.api.deps import (
    AdminNode,
    ChangesDep,
    CurrentIdentity,
    FederationDep,
    RunId,
)
from shared.identity import NAME_PATTERN
from shared.schemas import RunCreate, RunState, RunView

router = APIRouter(prefix="/runs", tags=["runs"])


@router.post("", status_code=status.HTTP_201_CREATED)
def create_run(
    body: RunCreate, admin: AdminNode, federation: FederationDep, changes: ChangesDep
) -> RunView:
    run = federation.create_run(admin, body)
    changes.fire()
    return run


@router.get("")
def list_runs(_: CurrentIdentity, federation: FederationDep) -> list[RunView]:
    return federation.list_runs()


@router.get("/{run_id}")
def get_run(run_id: RunId, _: CurrentIdentity, federation: FederationDep) -> RunView:
    return federation.get_run(run_id)


@router.delete("/{run_id}/nodes/{name}")
def remove_node(
    run_id: RunId,
    name: Annotated[str, Path(pattern=NAME_PATTERN, max_length=64)],
    _: AdminNode,
    federation: FederationDep,
    changes: ChangesDep,
) -> RunView:
    """Take a node out of an active run (its certificate stays valid): the open round
    stops waiting for it and what it sent to that round no longer counts."""
    run = federation.remove_node(run_id, name)
    changes.fire()
    return run


def _control(target: RunState):  # type: ignore[no-untyped-def]
    def control(
        run_id: RunId, _: AdminNode, federation: FederationDep, changes: ChangesDep
    ) -> RunView:
        run = federation.set_run_state(run_id, target)
        changes.fire()
        return run

    return control


router.add_api_route("/{run_id}/pause", _control(RunState.PAUSED), methods=["POST"])
router.add_api_route("/{run_id}/resume", _control(RunState.RUNNING), methods=["POST"])
router.add_api_route("/{run_id}/abort", _control(RunState.ABORTED), methods=["POST"])
