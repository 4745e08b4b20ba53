"""Training runs: creation with the initial global model, and the admin's run controls."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from services.aggregator.core.blobs import BlobStore
from services.aggregator.state.models import ModelVersion, Round, Run, Task, Update
from shared.errors import (
    ConfigurationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PolicyRejectedError,
)
from shared.model import initial_state
from shared.privacy.mechanisms import validate_run_policy
from shared.schemas import RoundKind, RoundState, RunCreate, RunState, UpdateStatus
from shared.tensors import to_bytes

ACTIVE_RUN_STATES = (RunState.RUNNING, RunState.PAUSED)


def get_run(session: Session, run_id: int) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise NotFoundError(f"no run {run_id}")
    return run


def latest_run(session: Session) -> Run | None:
    return session.scalars(select(Run).order_by(Run.id.desc()).limit(1)).first()


def open_round(
    session: Session, run: Run, number: int, kind: RoundKind, base_model: str, now: datetime
) -> Round:
    rnd = Round(
        run_id=run.id,
        number=number,
        kind=kind,
        state=RoundState.OPEN,
        attempt=1,
        base_model=base_model,
        opened_at=now,
        deadline=now + timedelta(seconds=run.round_timeout_s),
    )
    session.add(rnd)
    session.flush()
    # Every expected node's task is issued with the round, in the same transaction, so a
    # poll only reads; a node that polls again gets the same nonce.
    for node in run.expected_nodes:
        session.add(
            Task(round_id=rnd.id, node=node, nonce=secrets.token_urlsafe(24), issued_at=now)
        )
    return rnd


def create_run(
    session: Session, blobs: BlobStore, request: RunCreate, created_by: str, now: datetime
) -> Run:
    """Store the seeded initial model, the run and its first open round, in one transaction."""
    if len(set(request.expected_nodes)) != len(request.expected_nodes):
        raise InvalidRequestError("expected_nodes lists a node more than once")
    if request.min_nodes > len(request.expected_nodes):
        raise InvalidRequestError(
            f"min_nodes ({request.min_nodes}) exceeds the number of expected nodes "
            f"({len(request.expected_nodes)})"
        )
    try:
        privacy = validate_run_policy(request.privacy, request.plan, request.rounds)
    except ConfigurationError as err:
        raise PolicyRejectedError(f"privacy policy: {err}") from err
    active = session.scalars(select(Run).where(Run.state.in_(ACTIVE_RUN_STATES))).first()
    if active is not None:
        raise ConflictError(f"run {active.id} is still {active.state}; abort it first")
    data = to_bytes(initial_state(request.model, request.seed))
    sha = blobs.put_bytes(data)  # durable before any row references it
    run = Run(
        name=request.name,
        state=RunState.RUNNING,
        rounds=request.rounds,
        expected_nodes=list(request.expected_nodes),
        min_nodes=request.min_nodes,
        round_timeout_s=request.round_timeout_s,
        deadline_policy=request.deadline_policy,
        max_round_attempts=request.max_round_attempts,
        model_config_json=request.model.model_dump(mode="json"),
        plan_json=request.plan.model_dump(mode="json"),
        privacy_json=privacy.model_dump(mode="json"),
        aggregation_json=request.aggregation.model_dump(mode="json"),
        seed=request.seed,
        initial_model=sha,
        created_by=created_by,
        created_at=now,
    )
    session.add(run)
    session.flush()
    if session.get(ModelVersion, sha) is None:
        session.add(
            ModelVersion(
                sha256=sha, run_id=run.id, produced_by_round=0, size_bytes=len(data), created_at=now
            )
        )
    session.flush()
    open_round(session, run, 1, RoundKind.TRAIN, sha, now)
    return run


def set_run_state(session: Session, run_id: int, target: RunState, now: datetime) -> Run:
    """pause / resume / abort, with the transitions an operator would expect."""
    run = get_run(session, run_id)
    allowed = {
        RunState.PAUSED: (RunState.RUNNING,),
        RunState.RUNNING: (RunState.PAUSED,),
        RunState.ABORTED: (RunState.RUNNING, RunState.PAUSED),
    }
    if target not in allowed or run.state not in allowed[target]:
        raise ConflictError(f"run {run_id} is {run.state}; it cannot become {target}")
    open_rounds = session.scalars(
        select(Round).where(Round.run_id == run.id, Round.state == RoundState.OPEN)
    ).all()
    if target is RunState.ABORTED:
        for rnd in open_rounds:
            rnd.state = RoundState.ABORTED
            rnd.closed_at = now
            rnd.detail = "run aborted by an administrator"
        run.detail = "aborted by an administrator"
    elif target is RunState.RUNNING:
        # A paused round must not fail at a deadline that ran out while nobody could report.
        for rnd in open_rounds:
            rnd.deadline = now + timedelta(seconds=run.round_timeout_s)
    run.state = target
    return run


ACTIVE = (RunState.RUNNING, RunState.PAUSED)


def lock_if_open(session: Session, rnd: Round) -> bool:
    """Write-lock the round's row if it is still open; False (and ``rnd`` refreshed) if not.

    A no-op update conditional on the state: on PostgreSQL it takes the row lock every
    transition of the round needs, on SQLite the database's write lock. Uploads, removals
    and the close all take it, so each sees what the others committed.
    """
    result = session.execute(
        update(Round)
        .where(Round.id == rnd.id, Round.state == RoundState.OPEN)
        .values(state=RoundState.OPEN)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        session.refresh(rnd)
        return False
    return True


def remove_node(session: Session, run: Run, name: str, why: str) -> None:
    """Take ``name`` out of the run's expected nodes, from its open round on.

    Its answers to the open round no longer count and it gets no more tasks, so the round
    closes as soon as the remaining nodes have answered (the ticker re-checks it at once).
    """
    # Locks in the order every writer takes them, the open round's row then the run's: an
    # upload checked before this removal commits first and is excluded here, one after it
    # sees the removal; a round that began aggregating meanwhile is left alone (what it
    # counted stays); two removals at once each see the other's.
    current = session.scalars(
        select(Round).where(Round.run_id == run.id, Round.state == RoundState.OPEN)
    ).first()
    locked = current is not None and lock_if_open(session, current)
    session.refresh(run, with_for_update=True)
    if run.state not in ACTIVE:
        raise ConflictError(f"run {run.id} is {run.state}; only an active run's nodes change")
    if name not in run.expected_nodes:
        raise NotFoundError(f"node {name} is not one of run {run.id}'s expected nodes")
    run.expected_nodes = [n for n in run.expected_nodes if n != name]  # a new list: tracked
    if locked and current is not None:
        session.execute(
            update(Update)
            .where(
                Update.round_id == current.id,
                Update.node == name,
                Update.status.in_((UpdateStatus.ACCEPTED, UpdateStatus.DECLINED)),
            )
            .values(status=UpdateStatus.EXCLUDED, detail=f"node removed from the run ({why})")
            .execution_options(synchronize_session=False)
        )
    note = f"node {name} removed ({why})"
    run.detail = f"{run.detail}; {note}" if run.detail else note


def remove_node_everywhere(session: Session, name: str, why: str) -> list[int]:
    """``remove_node`` from every active run that expects it; the ids of those runs."""
    touched = []
    for run in session.scalars(select(Run).where(Run.state.in_(ACTIVE))).all():
        if name in run.expected_nodes:
            remove_node(session, run, name, why)
            touched.append(run.id)
    return touched
