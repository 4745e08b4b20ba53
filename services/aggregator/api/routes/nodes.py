"""Nodes: announcement, listing, and revocation of a certificate."""

from __future__ import annotations

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from services.aggregator.api.deps import (
    AdminNode,
    ChangesDep,
    CurrentIdentity,
    CurrentNode,
    FederationDep,
)
from shared.identity import LABEL_PATTERN
from shared.schemas import Announcement, NodeFailure, NodeView

router = APIRouter(tags=["nodes"])


class Revocation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    serial: str = Field(pattern=r"^[0-9a-fA-F]{1,40}$", description="hex serial number")
    name: str = Field(
        pattern=LABEL_PATTERN,
        description="the holder's common name, for the record (printable ASCII, at most 64)",
    )
    reason: str | None = Field(default=None, max_length=500)


@router.post("/nodes/announce")
def announce(body: Announcement, node: CurrentNode, federation: FederationDep) -> NodeView:
    return federation.announce(node, body)


@router.post("/nodes/failure", status_code=status.HTTP_204_NO_CONTENT)
def report_failure(body: NodeFailure, node: CurrentNode, federation: FederationDep) -> None:
    """A node says it failed (before it exits or retries); status shows it as ``failed``."""
    federation.report_failure(node, body)


@router.post("/nodes/heartbeat", status_code=status.HTTP_204_NO_CONTENT)
def heartbeat(node: CurrentNode, federation: FederationDep) -> None:
    """A node that is busy training says it is alive."""
    federation.heartbeat(node)


@router.get("/nodes")
def list_nodes(_: CurrentIdentity, federation: FederationDep) -> list[NodeView]:
    return federation.list_nodes()


@router.post("/revocations", status_code=status.HTTP_204_NO_CONTENT)
def revoke(body: Revocation, _: AdminNode, federation: FederationDep, changes: ChangesDep) -> None:
    """Refuse a certificate from its next request on, without a restart, and take its
    holder out of every active run (their open rounds stop waiting for it)."""
    federation.revoke(int(body.serial, 16), body.name, body.reason)
    changes.fire()
