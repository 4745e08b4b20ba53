"""Accepting a node's update: every check first, then row, then blob; idempotent per node.

Acceptance and the round's close serialise on the round's row: the accepting transaction
re-confirms the round is open with a conditional write on it (``_hold_open``), which the
close's compare-and-set (``rounds._begin_aggregating``) must wait for, and vice versa. So an
update the aggregator answers 201 for is in its round's model, and one that arrives as the
round closes is a 409 that stores nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.aggregator.aggregation import exact_sum
from services.aggregator.core.blobs import BlobStore
from services.aggregator.state.folds import sums_exactly
from services.aggregator.state.models import Node, Round, Run, Task, Update
from services.aggregator.state.runs import lock_if_open
from services.aggregator.state.weights import weight_refusal
from shared.errors import (
    DuplicateUpdateError,
    InvalidRequestError,
    NotExpectedError,
    NotFoundError,
    PermissionDeniedError,
    RoundNotOpenError,
    StaleModelError,
    UpdateRejectedError,
)
from shared.privacy.mechanisms import mechanism_for
from shared.schemas import (
    Decline,
    EvaluationReport,
    PrivacyPolicy,
    RoundKind,
    RoundState,
    TrainingPlan,
    UpdateManifest,
    UpdateMetrics,
    UpdateReceipt,
    UpdateStatus,
)
from shared.tensors import TensorSpec, check_against_spec, read_manifest, spec_of_file


@dataclass(frozen=True)
class Received:
    """An upload already streamed to a temporary file of the blob store."""

    path: Path
    sha256: str
    size: int


@lru_cache(maxsize=8)
def _spec(path: Path) -> dict[str, TensorSpec]:
    # Model blobs are immutable (content-addressed), so their spec never goes stale.
    return spec_of_file(path)


def _round(session: Session, run_id: int, number: int) -> Round:
    rnd = session.scalars(
        select(Round).where(Round.run_id == run_id, Round.number == number)
    ).first()
    if rnd is None:
        raise NotFoundError(f"run {run_id} has no round {number}")
    return rnd


def _receipt(rnd: Round, row: Update) -> UpdateReceipt:
    return UpdateReceipt(
        run_id=rnd.run_id,
        round=rnd.number,
        node=row.node,
        sha256=row.sha256,
        num_samples=row.num_samples,
        accepted_at=row.accepted_at,
    )


def _existing(session: Session, rnd: Round, node: str, sha256: str) -> UpdateReceipt | None:
    """The receipt of an identical earlier upload; 409 if a different one was accepted."""
    row = session.scalars(
        select(Update).where(Update.round_id == rnd.id, Update.node == node)
    ).first()
    if row is None:
        return None
    if row.sha256 != sha256:
        raise DuplicateUpdateError(
            f"node {node} already has a different update accepted for run {rnd.run_id} "
            f"round {rnd.number} (sha256 {row.sha256})"
        )
    return _receipt(rnd, row)


def _check_binding(
    session: Session,
    rnd: Round,
    node: str,
    manifest: UpdateManifest | EvaluationReport | Decline,
    kind: RoundKind,
) -> None:
    if (manifest.run_id, manifest.round) != (rnd.run_id, rnd.number):
        raise InvalidRequestError(
            f"the body is for run {manifest.run_id} round {manifest.round}, "
            f"but was sent to run {rnd.run_id} round {rnd.number}"
        )
    run = session.get(Run, rnd.run_id)
    if run is None or node not in run.expected_nodes:
        raise NotExpectedError(
            f"node {node} is not one of run {rnd.run_id}'s expected nodes (it was never "
            "part of the run, or an operator removed it); nothing was stored"
        )
    task = session.scalars(select(Task).where(Task.round_id == rnd.id, Task.node == node)).first()
    if task is None:
        raise PermissionDeniedError(
            f"no task was issued to node {node} for run {rnd.run_id} round {rnd.number}"
        )
    if task.nonce != manifest.task_nonce:
        raise PermissionDeniedError(
            f"task nonce does not match the task issued to node {node} for round {rnd.number}"
        )
    if rnd.state != RoundState.OPEN:
        raise RoundNotOpenError(f"round {rnd.number} of run {rnd.run_id} is {rnd.state}")
    if rnd.kind != kind:
        raise InvalidRequestError(f"round {rnd.number} is a {rnd.kind} round, not {kind}")
    if manifest.base_model != rnd.base_model:
        raise StaleModelError(
            f"update was computed from model {manifest.base_model[:12]}…, "
            f"but round {rnd.number}'s base model is {rnd.base_model[:12]}…"
        )


def _hold_open(session: Session, rnd: Round) -> None:
    """Lock the round's row (runs.lock_if_open) and confirm it is open, or RoundNotOpenError.

    A close that committed after this transaction's checks is seen here, and a close that
    comes later waits for this transaction and then counts its row.
    """
    if not lock_if_open(session, rnd):
        raise RoundNotOpenError(
            f"round {rnd.number} of run {rnd.run_id} closed (it is {rnd.state}) while this "
            "upload was being checked; it is not part of the round and nothing was stored"
        )


def _still_expected(session: Session, rnd: Round, node: str) -> None:
    """Under the round's lock: was the node removed from the run while this was checked?"""
    expected = session.scalar(select(Run.expected_nodes).where(Run.id == rnd.run_id))
    if expected is None or node not in expected:
        raise NotExpectedError(
            f"node {node} was removed from run {rnd.run_id} while this was being checked; "
            "nothing was stored"
        )


Seam = Callable[[str], None]
"""Called with "checked" (all checks passed) and "held" (the round's row is locked)."""


def _check_against_run(session: Session, rnd: Round, node: str, manifest: UpdateManifest) -> None:
    """What the run's policy lets a node send: its weight range and its tensors' encoding."""
    run = session.get(Run, rnd.run_id)
    assert run is not None
    policy = PrivacyPolicy.model_validate(run.privacy_json)
    if manifest.sparse and not mechanism_for(policy.mechanism).sends_sparse:
        raise UpdateRejectedError(
            f"update refused: the run's {policy.mechanism.value} policy sends dense tensors "
            f"only, but {len(manifest.sparse)} arrived sparse; nothing was stored"
        )
    announced = session.get(Node, node)
    refusal = weight_refusal(
        manifest.num_samples,
        policy,
        TrainingPlan.model_validate(run.plan_json),
        announced.num_train_cases if announced is not None else None,
    )
    if refusal is not None:
        raise UpdateRejectedError(f"update refused: {refusal}; nothing was stored")


def _insert(session: Session, rnd: Round, row: Update, seam: Seam) -> tuple[UpdateReceipt, bool]:
    seam("checked")
    _hold_open(session, rnd)
    seam("held")
    _still_expected(session, rnd, row.node)
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        # The same node raced itself; the first upload won. Same bytes: same receipt.
        existing = _existing(session, rnd, row.node, row.sha256)
        if existing is None:
            raise
        return existing, False
    return _receipt(rnd, row), True


def _nothing(_phase: str) -> None:
    return None


def accept_update(
    session: Session,
    blobs: BlobStore,
    node: str,
    run_id: int,
    number: int,
    received: Received,
    now: datetime,
    seam: Seam = _nothing,
) -> tuple[UpdateReceipt, bool]:
    """Validate an uploaded update and record it; (receipt, newly_accepted).

    Nothing is written unless every check passes: the row is inserted (under the round's
    lock, ``_hold_open``) after validation, the temporary file is renamed into the blob
    store after that, and the transaction commits last. A crash between the rename and the
    commit leaves a blob without a row, which start-up removes. ``seam`` lets tests force
    the race with the round's close at either side of the lock.
    """
    rnd = _round(session, run_id, number)
    previous = _existing(session, rnd, node, received.sha256)
    if previous is not None:
        return previous, False
    manifest = read_manifest(received.path)
    _check_binding(session, rnd, node, manifest, RoundKind.TRAIN)
    _check_against_run(session, rnd, node, manifest)
    largest = check_against_spec(
        received.path, _spec(blobs.open_path(rnd.base_model)), manifest.sparse, manifest.excluded
    )
    exact = sums_exactly(session, rnd)
    beyond = exact_sum.refusal(largest, manifest.num_samples) if exact else None
    if beyond is not None:
        raise UpdateRejectedError(f"update refused: {beyond}; nothing was stored")
    row = Update(
        round_id=rnd.id,
        node=node,
        sha256=received.sha256,
        has_blob=True,
        status=UpdateStatus.ACCEPTED,
        num_samples=manifest.num_samples,
        metrics_json=manifest.metrics.model_dump(mode="json"),
        privacy_json=manifest.privacy.model_dump(mode="json") if manifest.privacy else None,
        privacy_total_json=(
            manifest.privacy_total.model_dump(mode="json") if manifest.privacy_total else None
        ),
        size_bytes=received.size,
        accepted_at=now,
    )
    receipt, new = _insert(session, rnd, row, seam)
    if new:
        session.flush()
        blobs.commit(received.path, received.sha256)
    return receipt, new


def _accept_report(
    session: Session,
    node: str,
    run_id: int,
    number: int,
    report: Decline | EvaluationReport,
    now: datetime,
) -> tuple[UpdateReceipt, bool]:
    """Record a JSON report (no tensors), idempotent on its canonical bytes like an upload."""
    canonical = report.model_dump_json().encode()
    sha256 = hashlib.sha256(canonical).hexdigest()
    rnd = _round(session, run_id, number)
    previous = _existing(session, rnd, node, sha256)
    if previous is not None:
        return previous, False
    declined = isinstance(report, Decline)
    _check_binding(
        session, rnd, node, report, RoundKind(rnd.kind) if declined else RoundKind.EVALUATE
    )
    row = Update(
        round_id=rnd.id,
        node=node,
        sha256=sha256,
        has_blob=False,
        status=UpdateStatus.DECLINED if declined else UpdateStatus.ACCEPTED,
        detail=report.reason if isinstance(report, Decline) else None,
        num_samples=0 if isinstance(report, Decline) else report.num_samples or 0,
        metrics_json=(
            UpdateMetrics() if isinstance(report, Decline) else report.metrics
        ).model_dump(mode="json"),
        privacy_json=(
            report.privacy.model_dump(mode="json")
            if isinstance(report, EvaluationReport) and report.privacy
            else None
        ),
        privacy_total_json=(
            report.privacy_total.model_dump(mode="json") if report.privacy_total else None
        ),
        size_bytes=len(canonical),
        accepted_at=now,
    )
    return _insert(session, rnd, row, _nothing)


def accept_decline(
    session: Session, node: str, run_id: int, number: int, decline: Decline, now: datetime
) -> tuple[UpdateReceipt, bool]:
    """Record that a node released nothing this round, and why; the round goes on."""
    return _accept_report(session, node, run_id, number, decline, now)


def accept_evaluation(
    session: Session, node: str, run_id: int, number: int, report: EvaluationReport, now: datetime
) -> tuple[UpdateReceipt, bool]:
    """Record a node's measurement of the final model (an evaluation round has no tensors)."""
    return _accept_report(session, node, run_id, number, report, now)
