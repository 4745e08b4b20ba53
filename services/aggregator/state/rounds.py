"""The round state machine: tasks for nodes, and open -> aggregating -> closed transitions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import torch
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from services.aggregator.aggregation.exact_sum import SumRangeError
from services.aggregator.aggregation.registry import strategy_for
from services.aggregator.aggregation.strategy import LinearStrategy, ServerState, WeightedUpdate
from services.aggregator.core.blobs import BlobStore
from services.aggregator.state.folds import RoundSums, key_of
from services.aggregator.state.models import ModelVersion, Round, Run, Task, Update
from services.aggregator.state.runs import lock_if_open, open_round
from shared.model import ModelConfig
from shared.privacy.types import SparseTensor
from shared.schemas import (
    Aggregation,
    DeadlinePolicy,
    PrivacyPolicy,
    RoundKind,
    RoundState,
    RunState,
    TaskPoll,
    TrainingPlan,
    UpdateManifest,
    UpdateStatus,
)
from shared.schemas import Task as TaskBody
from shared.tensors import (
    ModelSpec,
    iter_update,
    load_file,
    read_manifest,
    read_update_tensor,
    spec_of,
    to_bytes,
)


def open_round_of(session: Session, run_id: int) -> Round | None:
    return session.scalars(
        select(Round).where(
            Round.run_id == run_id,
            Round.state.in_((RoundState.OPEN, RoundState.AGGREGATING)),
        )
    ).first()


def poll_task(session: Session, node: str, now: datetime) -> TaskPoll:
    """The node's task in the current round, issued once and handed out again on re-poll."""
    run = session.scalars(select(Run).order_by(Run.id.desc()).limit(1)).first()
    if run is None:
        return TaskPoll(task=None, run_id=None, run_state=None)
    idle = TaskPoll(task=None, run_id=run.id, run_state=RunState(run.state))
    if run.state != RunState.RUNNING or node not in run.expected_nodes:
        return idle
    rnd = open_round_of(session, run.id)
    if rnd is None or rnd.state != RoundState.OPEN:
        return idle
    reported = session.scalar(
        select(func.count())
        .select_from(Update)
        .where(Update.round_id == rnd.id, Update.node == node)
    )
    if reported:
        return idle
    task = session.scalars(select(Task).where(Task.round_id == rnd.id, Task.node == node)).one()
    body = TaskBody(
        run_id=run.id,
        round=rnd.number,
        kind=RoundKind(rnd.kind),
        rounds=run.rounds,
        task_nonce=task.nonce,
        base_model=rnd.base_model,
        model=ModelConfig.model_validate(run.model_config_json),
        plan=TrainingPlan.model_validate(run.plan_json),
        privacy=PrivacyPolicy.model_validate(run.privacy_json),
        deadline=rnd.deadline,
    )
    return TaskPoll(task=body, run_id=run.id, run_state=RunState.RUNNING)


def response_counts(session: Session, rnd: Round) -> tuple[int, int]:
    """(nodes that responded at all, nodes whose update was accepted) in this round.

    What a node sent before it was removed from the run is ``excluded`` and counts for
    neither.
    """
    rows = session.execute(
        select(Update.status, func.count()).where(Update.round_id == rnd.id).group_by(Update.status)
    ).all()
    counts = {status: int(n) for status, n in rows}
    accepted = counts.get(UpdateStatus.ACCEPTED, 0)
    return accepted + counts.get(UpdateStatus.DECLINED, 0), accepted


def _begin_aggregating(session: Session, rnd: Round) -> bool:
    """Compare-and-set open -> aggregating, so only one caller ever aggregates a round."""
    session.flush()
    result = session.execute(
        update(Round)
        .where(Round.id == rnd.id, Round.state == RoundState.OPEN)
        .values(state=RoundState.AGGREGATING)
        .execution_options(synchronize_session=False)
    )
    session.refresh(rnd)
    return bool(getattr(result, "rowcount", 0) == 1)


def check_round(session: Session, run: Run, rnd: Round, now: datetime) -> bool:
    """Apply the quorum and deadline rules to an open round; True if it should aggregate.

    Read-only while nothing is due. When something is, the round's row is locked first
    and the run and the answers are read again, so a node removed (or an update accepted)
    in between is counted as it now stands.
    """
    if not _transition_due(session, run, rnd, now) or not lock_if_open(session, rnd):
        return False
    session.refresh(run)
    return _apply_rules(session, run, rnd, now)


def _transition_due(session: Session, run: Run, rnd: Round, now: datetime) -> bool:
    if len(run.expected_nodes) < run.min_nodes or now >= rnd.deadline:
        return True
    responded, _ = response_counts(session, rnd)
    return responded >= len(run.expected_nodes)


def _apply_rules(session: Session, run: Run, rnd: Round, now: datetime) -> bool:
    if len(run.expected_nodes) < run.min_nodes:
        _fail(run, rnd, now, f"only {len(run.expected_nodes)} expected nodes are left "
              f"(min_nodes {run.min_nodes})")  # fmt: skip
        return False
    responded, reported = response_counts(session, rnd)
    if responded >= len(run.expected_nodes):
        if reported >= run.min_nodes:
            return _begin_aggregating(session, rnd)
        # Everyone answered, too few contributed (declines): waiting cannot help.
        _fail(run, rnd, now, f"all nodes responded but only {reported} contributed "
              f"(min_nodes {run.min_nodes})")  # fmt: skip
        return False
    if now < rnd.deadline:
        return False
    if reported >= run.min_nodes:
        rnd.detail = f"deadline passed with {reported} of {len(run.expected_nodes)} updates"
        return _begin_aggregating(session, rnd)
    shortfall = (
        f"deadline passed with {reported} of {len(run.expected_nodes)} updates "
        f"(min_nodes {run.min_nodes})"
    )
    if run.deadline_policy == DeadlinePolicy.REOPEN and rnd.attempt < run.max_round_attempts:
        rnd.attempt += 1
        rnd.deadline = now + timedelta(seconds=run.round_timeout_s)
        rnd.detail = f"{shortfall}; re-opened, attempt {rnd.attempt} of {run.max_round_attempts}"
        return False
    _fail(run, rnd, now, shortfall)
    return False


def _fail(run: Run, rnd: Round, now: datetime, why: str) -> None:
    rnd.state = RoundState.FAILED
    rnd.closed_at = now
    rnd.detail = f"{why}; round failed"
    run.state = RunState.FAILED
    run.detail = f"round {rnd.number} failed: {why}"


def _weighted_updates(
    session: Session, blobs: BlobStore, rnd: Round, spec: ModelSpec
) -> dict[str, WeightedUpdate]:
    """The round's accepted updates by ``folds.key_of``, in node order, read lazily."""
    contributions: dict[str, WeightedUpdate] = {}
    rows = session.scalars(
        select(Update)
        .where(Update.round_id == rnd.id, Update.status == UpdateStatus.ACCEPTED)
        .order_by(Update.node)
    ).all()
    for row in rows:
        path: Path = blobs.open_path(row.sha256)
        manifest = read_manifest(path)

        def tensors(
            p: Path = path, m: UpdateManifest = manifest
        ) -> Iterator[tuple[str, torch.Tensor | SparseTensor]]:
            return iter_update(p, m, spec)

        def reader(
            name: str, p: Path = path, m: UpdateManifest = manifest
        ) -> torch.Tensor | SparseTensor | None:
            return read_update_tensor(p, m, spec, name)

        contributions[key_of(row.node, row.sha256)] = WeightedUpdate(
            row.node, float(row.num_samples), tensors, reader
        )
    return contributions


def _previous_state(session: Session, blobs: BlobStore, rnd: Round) -> ServerState | None:
    """The server state the round before ``rnd`` left (None for round 1 or a stateless run)."""
    sha = session.scalar(
        select(Round.server_state).where(Round.run_id == rnd.run_id, Round.number == rnd.number - 1)
    )
    return None if sha is None else load_file(blobs.open_path(sha))


def _non_finite(model: dict[str, torch.Tensor]) -> str | None:
    """The first tensor of ``model`` holding NaN or infinity, described, or None."""
    for name, tensor in model.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            return f"{bad} of {tensor.numel()} values of {name} are NaN or infinite"
    return None


def finish_round(
    session: Session, blobs: BlobStore, sums: RoundSums, run: Run, rnd: Round, now: datetime
) -> None:
    """Aggregate an ``aggregating`` round, close it and open the next, in one transaction.

    The new model's blob is written (atomically) before the rows that reference it, so a
    crash anywhere leaves the round ``aggregating`` and a restart simply does this again:
    the same accepted updates give the same model, counted once. A linear strategy starts
    from the round's running sum (``sums``), which is exact, so the model is the same bits
    whether the sum was folded as updates arrived or rebuilt here after a restart.
    """
    _, accepted = response_counts(session, rnd)
    if accepted < run.min_nodes:  # defensive: the close counted under the round's lock
        _fail(run, rnd, now, f"only {accepted} accepted updates are left to aggregate "
              f"(min_nodes {run.min_nodes})")  # fmt: skip
        return
    if rnd.kind == RoundKind.EVALUATE:
        result_sha = rnd.base_model
    else:
        base = load_file(blobs.open_path(rnd.base_model))
        strategy = strategy_for(Aggregation.model_validate(run.aggregation_json or {}))
        spec = spec_of(base)
        contributions = _weighted_updates(session, blobs, rnd, spec)
        previous = _previous_state(session, blobs, rnd)
        try:
            if isinstance(strategy, LinearStrategy):
                mean = sums.take(rnd.id, spec, contributions).mean()
                merged, state = strategy.step(base, mean, previous)
            else:
                merged, state = strategy.aggregate_with_state(
                    base, contributions.values(), previous
                )
        except SumRangeError as exc:
            _fail(run, rnd, now, str(exc))
            return
        broken = _non_finite(merged) or (_non_finite(state) if state is not None else None)
        if broken is not None:
            # Never publish it: every node would train from a model of infinities.
            _fail(run, rnd, now, f"the aggregated model is not finite ({broken})")
            return
        if state is not None:
            rnd.server_state = blobs.put_bytes(to_bytes(state))
        data = to_bytes(merged)
        result_sha = blobs.put_bytes(data)
        if session.get(ModelVersion, result_sha) is None:
            session.add(
                ModelVersion(
                    sha256=result_sha,
                    run_id=run.id,
                    produced_by_round=rnd.number,
                    size_bytes=len(data),
                    created_at=now,
                )
            )
    rnd.state = RoundState.CLOSED
    rnd.result_model = result_sha
    rnd.closed_at = now
    if rnd.kind == RoundKind.EVALUATE:
        run.state = RunState.COMPLETED
        return
    next_kind = RoundKind.TRAIN if rnd.number < run.rounds else RoundKind.EVALUATE
    session.flush()
    open_round(session, run, rnd.number + 1, next_kind, result_sha, now)


def advance(session: Session, blobs: BlobStore, sums: RoundSums, now: datetime) -> bool:
    """One step of every running run's state machine; True if anything changed.

    Call in a loop: each call commits at most one transition per run.
    """
    changed = False
    runs = session.scalars(select(Run).where(Run.state == RunState.RUNNING)).all()
    for run in runs:
        rnd = open_round_of(session, run.id)
        if rnd is None:
            continue
        if rnd.state == RoundState.OPEN:
            before = (rnd.state, rnd.attempt, run.state)
            if check_round(session, run, rnd, now):
                session.commit()  # "aggregating" is visible while the model is computed
                changed = True
            elif before != (rnd.state, rnd.attempt, run.state):
                session.commit()
                changed = True
        if rnd.state == RoundState.AGGREGATING:
            finish_round(session, blobs, sums, run, rnd, now)
            session.commit()
            changed = True
    return changed
