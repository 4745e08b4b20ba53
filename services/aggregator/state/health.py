"""What the operator sees of each node: ok, late, offline, failed or revoked, and why.

One rule, worst first, the first that applies wins:

1. ``revoked``: the certificate it last connected with is on the denylist.
2. ``failed``: it reported a failure it has not recovered from (a new start-up clears it),
   or its newest answer in the newest run was a decline (until it contributes again).
3. ``offline``: not seen for longer than ``offline_after``. A node heartbeats while it
   trains, so a long local round does not look like a crash.
4. ``late``: expected in the newest run's open round and the deadline passed without its
   answer, or the last round that closed went on without it.
5. ``ok``, with what it is doing (training round N, reported round N, idle).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.aggregator.state.models import Node, RevokedCertificate, Round, Run, Update
from services.aggregator.state.nodes import TOUCH_INTERVAL
from shared.schemas import NodeState, RoundState, RunState, UpdateStatus

OFFLINE_AFTER = timedelta(seconds=120)
"""Default: a node polls at least every long-poll period and heartbeats every 30 s."""


@dataclass(frozen=True)
class Health:
    state: NodeState
    detail: str | None


@dataclass(frozen=True)
class RunPicture:
    """What the newest running (or paused) run says about every node, read once."""

    expected: frozenset[str]
    open_round: Round | None
    answered: dict[str, Update]
    """Each node's answer in the open round."""
    last_closed: Round | None
    closed_answered: frozenset[str]
    newest_answer: dict[str, tuple[int, Update]]
    """Each node's newest answer in the run: (round number, row)."""


def run_picture(session: Session) -> RunPicture | None:
    """The newest run's view of its nodes, or None when no run is running or paused."""
    run = session.scalars(select(Run).order_by(Run.id.desc()).limit(1)).first()
    if run is None or run.state not in (RunState.RUNNING, RunState.PAUSED):
        return None
    rounds = session.scalars(
        select(Round).where(Round.run_id == run.id).order_by(Round.number)
    ).all()
    by_id = {r.id: r for r in rounds}
    current = next(
        (r for r in rounds if r.state in (RoundState.OPEN, RoundState.AGGREGATING)), None
    )
    closed = [r for r in rounds if r.state == RoundState.CLOSED]
    last_closed = closed[-1] if closed else None
    answers = session.scalars(
        select(Update).where(Update.round_id.in_(list(by_id))).order_by(Update.id)
    ).all()
    newest: dict[str, tuple[int, Update]] = {}
    for row in answers:
        number = by_id[row.round_id].number
        if row.node not in newest or newest[row.node][0] <= number:
            newest[row.node] = (number, row)
    return RunPicture(
        expected=frozenset(run.expected_nodes),
        open_round=current,
        answered={
            row.node: row for row in answers if current is not None and row.round_id == current.id
        },
        last_closed=last_closed,
        closed_answered=frozenset(
            row.node
            for row in answers
            if last_closed is not None and row.round_id == last_closed.id
        ),
        newest_answer=newest,
    )


def revoked_serials(session: Session) -> dict[str, RevokedCertificate]:
    return {row.serial: row for row in session.scalars(select(RevokedCertificate))}


def _ago(now: datetime, then: datetime) -> str:
    seconds = max(0, int((now - then).total_seconds()))
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min"


def node_health(
    node: Node,
    now: datetime,
    offline_after: timedelta,
    revoked: dict[str, RevokedCertificate],
    picture: RunPicture | None,
) -> Health:
    """The node's state by the rule in this module's docstring."""
    if node.serial is not None and node.serial in revoked:
        denied = revoked[node.serial]
        why = f": {denied.reason}" if denied.reason else ""
        return Health(NodeState.REVOKED, f"certificate {node.serial} revoked{why}")
    if node.failure is not None:
        return Health(NodeState.FAILED, node.failure)
    expected = picture is not None and node.name in picture.expected
    if picture is not None and expected and node.name in picture.newest_answer:
        number, answer = picture.newest_answer[node.name]
        if answer.status == UpdateStatus.DECLINED:
            return Health(NodeState.FAILED, f"declined round {number}: {answer.detail or '?'}")
    if now - node.last_seen > offline_after:
        return Health(NodeState.OFFLINE, f"not seen for {_ago(now, node.last_seen)}")
    if picture is None or not expected:
        return Health(NodeState.OK, "idle")
    current = picture.open_round
    if current is not None and node.name in picture.answered:
        return Health(NodeState.OK, f"reported round {current.number}")
    if current is not None and current.state == RoundState.OPEN and now >= current.deadline:
        return Health(
            NodeState.LATE,
            f"round {current.number}'s deadline passed {_ago(now, current.deadline)} ago",
        )
    # Every task is issued when its round opens; a node seen since then has fetched it.
    working = current is not None and node.last_seen >= current.opened_at - TOUCH_INTERVAL
    missed = picture.last_closed
    if missed is not None and node.name not in picture.closed_answered and not working:
        return Health(NodeState.LATE, f"round {missed.number} closed without it")
    if current is not None and working:
        return Health(NodeState.OK, f"training round {current.number}")
    return Health(NodeState.OK, "waiting for a task")
