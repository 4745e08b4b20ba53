"""Read models for the status API: runs, rounds with their metrics, nodes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.aggregator.state.cache import SettledRounds
from services.aggregator.state.health import node_health, revoked_serials, run_picture
from services.aggregator.state.models import Node, Round, Run, Update
from services.aggregator.state.rounds import open_round_of
from shared.identity import Role
from shared.model import ModelConfig
from shared.schemas import (
    Aggregation,
    NodeUpdateView,
    NodeView,
    PrivacyPolicy,
    PrivacySpend,
    PrivacyTotal,
    RegionDice,
    RegionDistance,
    RoundKind,
    RoundState,
    RoundView,
    RunState,
    RunView,
    TrainingPlan,
    UpdateMetrics,
    UpdateStatus,
)

Regions = TypeVar("Regions", RegionDice, RegionDistance)


def mean_over_nodes(values: Sequence[Regions]) -> Regions | None:
    """Unweighted mean over nodes: each hospital's validation split counts once."""
    if not values:
        return None
    n = len(values)
    return type(values[0])(
        tc=sum(v.tc for v in values) / n,
        wt=sum(v.wt for v in values) / n,
        et=sum(v.et for v in values) / n,
        mean=sum(v.mean for v in values) / n,
    )


def run_view(session: Session, run: Run) -> RunView:
    current = open_round_of(session, run.id)
    latest = session.scalars(
        select(Round).where(Round.run_id == run.id).order_by(Round.number.desc()).limit(1)
    ).first()
    closed = session.scalars(
        select(Round)
        .where(Round.run_id == run.id, Round.state == RoundState.CLOSED)
        .order_by(Round.number.desc())
        .limit(1)
    ).first()
    global_model = run.initial_model
    if closed is not None and closed.result_model is not None:
        global_model = closed.result_model
    return RunView(
        id=run.id,
        name=run.name,
        state=RunState(run.state),
        rounds=run.rounds,
        current_round=shown.number if (shown := current or latest) is not None else None,
        expected_nodes=list(run.expected_nodes),
        min_nodes=run.min_nodes,
        model=ModelConfig.model_validate(run.model_config_json),
        plan=TrainingPlan.model_validate(run.plan_json),
        privacy=PrivacyPolicy.model_validate(run.privacy_json),
        aggregation=Aggregation.model_validate(run.aggregation_json or {}),
        global_model=global_model,
        created_at=run.created_at,
        detail=run.detail,
    )


def round_view(session: Session, run: Run, rnd: Round) -> RoundView:
    rows = session.scalars(
        select(Update).where(Update.round_id == rnd.id).order_by(Update.node)
    ).all()
    updates = [
        NodeUpdateView(
            node=row.node,
            status=UpdateStatus(row.status),
            detail=row.detail,
            num_samples=row.num_samples,
            sha256=row.sha256,
            accepted_at=row.accepted_at,
            metrics=UpdateMetrics.model_validate(row.metrics_json),
            privacy=PrivacySpend.model_validate(row.privacy_json) if row.privacy_json else None,
            privacy_total=(
                PrivacyTotal.model_validate(row.privacy_total_json)
                if row.privacy_total_json
                else None
            ),
        )
        for row in rows
    ]
    accepted = [u for u in updates if u.status == UpdateStatus.ACCEPTED]
    metrics = [u.metrics for u in accepted]
    return RoundView(
        run_id=run.id,
        round=rnd.number,
        kind=RoundKind(rnd.kind),
        state=RoundState(rnd.state),
        attempt=rnd.attempt,
        base_model=rnd.base_model,
        result_model=rnd.result_model,
        expected_nodes=list(run.expected_nodes),
        reported_nodes=[u.node for u in accepted],
        declined_nodes=[u.node for u in updates if u.status == UpdateStatus.DECLINED],
        num_samples=sum(u.num_samples for u in accepted),
        opened_at=rnd.opened_at,
        deadline=rnd.deadline,
        closed_at=rnd.closed_at,
        detail=rnd.detail,
        mean_dice_global=mean_over_nodes(
            [m.dice_global for m in metrics if m.dice_global is not None]
        ),
        mean_dice_local=mean_over_nodes(
            [m.dice_local for m in metrics if m.dice_local is not None]
        ),
        mean_hd95_global=mean_over_nodes(
            [m.hd95_global for m in metrics if m.hd95_global is not None]
        ),
        mean_hd95_local=mean_over_nodes(
            [m.hd95_local for m in metrics if m.hd95_local is not None]
        ),
        updates=updates,
    )


SETTLED = (RoundState.CLOSED, RoundState.FAILED)


def round_views(
    session: Session, run: Run, settled: SettledRounds | None = None
) -> list[RoundView]:
    """Every round of ``run``; a settled round's view comes from ``settled`` once built."""
    rounds = session.scalars(
        select(Round).where(Round.run_id == run.id).order_by(Round.number)
    ).all()
    views: list[RoundView] = []
    for rnd in rounds:
        kept = settled.get(rnd.id) if settled is not None else None
        if kept is not None:
            views.append(kept.model_copy(update={"expected_nodes": list(run.expected_nodes)}))
            continue
        view = round_view(session, run, rnd)
        if settled is not None and rnd.state in SETTLED:
            settled.put(rnd.id, view)
        views.append(view)
    return views


@dataclass(frozen=True)
class LedgerHistory:
    """What a node's reported totals say over time: the newest, the highest, a regression."""

    latest: PrivacyTotal
    highest: float | None
    regression: str | None


def fold_totals(totals: Sequence[PrivacyTotal]) -> LedgerHistory:
    """One node's reported cumulative spends, oldest first, folded into a LedgerHistory.

    A node's ledger only grows, so a total below the highest one seen, or a report from a
    different ledger id, means the ledger was replaced or rolled back on the node. The
    first regression found is kept: a later report cannot clear it.
    """
    if not totals:
        raise ValueError("fold_totals needs at least one total")
    first = totals[0]
    history = LedgerHistory(first, first.epsilon, None)
    for total in totals[1:]:
        previous, regression = history.latest, history.regression
        if regression is None and previous.ledger_id and total.ledger_id != previous.ledger_id:
            regression = (
                f"ledger regression: the node reported ledger {total.ledger_id} after "
                f"ledger {previous.ledger_id} (its privacy ledger was replaced)"
            )
        highest = history.highest
        if (
            regression is None
            and highest is not None
            and total.epsilon is not None
            and total.epsilon < highest
        ):
            regression = (
                f"ledger regression: cumulative epsilon {total.epsilon:.4g} reported after "
                f"{highest:.4g}"
            )
        if highest is not None and total.epsilon is not None:
            highest = max(highest, total.epsilon)
        else:
            highest = None
        history = LedgerHistory(total, highest, regression)
    return history


def _ledger_histories(session: Session) -> dict[str, LedgerHistory]:
    """Each node's LedgerHistory, from every total it reported (updates, declines, reports)."""
    rows = session.execute(
        select(Update.node, Update.privacy_total_json)
        .where(Update.privacy_total_json.is_not(None))
        .order_by(Update.accepted_at, Update.id)
    ).all()
    totals: dict[str, list[PrivacyTotal]] = {}
    for node, raw in rows:
        if raw:
            totals.setdefault(node, []).append(PrivacyTotal.model_validate(raw))
    return {node: fold_totals(reported) for node, reported in totals.items()}


def node_views(session: Session, now: datetime, offline_after: timedelta) -> list[NodeView]:
    joined = dict(
        session.execute(
            select(Update.node, func.count(func.distinct(Update.round_id)))
            .where(Update.status == UpdateStatus.ACCEPTED)
            .group_by(Update.node)
        ).all()
    )
    histories = _ledger_histories(session)
    nodes = session.scalars(select(Node).order_by(Node.name)).all()
    revoked, picture = revoked_serials(session), run_picture(session)
    healths = {n.name: node_health(n, now, offline_after, revoked, picture) for n in nodes}
    return [
        NodeView(
            name=n.name,
            role=Role(n.role),
            software_version=n.software_version,
            device=n.device,
            num_train_cases=n.num_train_cases,
            last_seen=n.last_seen,
            rounds_joined=int(joined.get(n.name, 0)),
            privacy_total=histories[n.name].latest if n.name in histories else None,
            privacy_epsilon_max=histories[n.name].highest if n.name in histories else None,
            ledger_regression=histories[n.name].regression if n.name in histories else None,
            state=healths[n.name].state,
            state_detail=healths[n.name].detail,
            last_error=n.last_error,
            last_error_at=n.last_error_at,
        )
        for n in nodes
    ]
