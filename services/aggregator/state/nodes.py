"""Nodes seen by the aggregator, and the certificate denylist."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.aggregator.state.models import Node, RevokedCertificate
from shared.errors import ProtocolMismatchError
from shared.identity import Identity
from shared.schemas import PROTOCOL_VERSION, Announcement

TOUCH_INTERVAL = timedelta(seconds=10)
"""last_seen is refreshed at most this often, so polls stay read-only (no fsync each)."""


def touch(session: Session, identity: Identity, now: datetime) -> Node:
    """Record that ``identity`` was seen now, creating its row on first contact.

    Many first requests of one node may race to create its row: the insert runs in a
    savepoint, and the loser of the race reads the winner's row instead of failing.
    """
    serial = format(identity.serial, "x")
    node = session.get(Node, identity.name)
    if node is None:
        try:
            with session.begin_nested():
                node = Node(
                    name=identity.name,
                    role=identity.role,
                    first_seen=now,
                    last_seen=now,
                    serial=serial,
                )
                session.add(node)
            return node
        except IntegrityError:
            node = session.get(Node, identity.name, populate_existing=True)
            if node is None:
                raise
    if now - node.last_seen >= TOUCH_INTERVAL:
        node.last_seen = now
    if node.serial != serial:
        node.serial = serial
    return node


def check_protocol(name: str, protocol: int) -> None:
    """Raise ProtocolMismatchError naming both versions unless `protocol` is PROTOCOL_VERSION."""
    if protocol != PROTOCOL_VERSION:
        raise ProtocolMismatchError(
            f"node {name} speaks wire protocol {protocol}, this aggregator "
            f"{PROTOCOL_VERSION}: run the same fedseg release on the aggregator and every node"
        )


def announce(session: Session, identity: Identity, body: Announcement, now: datetime) -> Node:
    """Record what a node says about itself; refuse a node on another wire protocol."""
    check_protocol(identity.name, body.protocol)
    node = touch(session, identity, now)
    node.last_seen = now
    node.software_version = body.software_version
    node.device = body.device
    node.num_train_cases = body.num_train_cases
    node.num_val_cases = body.num_val_cases
    node.failure = None  # a fresh start: whatever failed before is for last_error now
    return node


def report_failure(session: Session, identity: Identity, reason: str, now: datetime) -> Node:
    """Record what a node says went wrong; it shows as ``failed`` until it starts again."""
    node = touch(session, identity, now)
    node.last_seen = now
    node.failure = reason
    node.last_error = reason
    node.last_error_at = now
    return node


def heartbeat(session: Session, identity: Identity, now: datetime) -> Node:
    """A node busy training says it is alive (its polls pause while it trains)."""
    node = touch(session, identity, now)
    node.last_seen = now
    return node


def is_revoked(session: Session, serial: int) -> bool:
    return session.get(RevokedCertificate, format(serial, "x")) is not None


def revoke(session: Session, serial: int, name: str, reason: str | None, now: datetime) -> None:
    key = format(serial, "x")
    if session.get(RevokedCertificate, key) is None:
        session.add(RevokedCertificate(serial=key, name=name, revoked_at=now, reason=reason))
