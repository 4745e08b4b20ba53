"""What the aggregator reports about runs, rounds and nodes, its health, and its errors."""

from __future__ import annotations

from datetime import datetime

from shared.identity import Role
from shared.model import ModelConfig
from shared.schemas.base import _Strict
from shared.schemas.metrics import RegionDice, RegionDistance, UpdateMetrics
from shared.schemas.privacy import PrivacyPolicy, PrivacySpend, PrivacyTotal
from shared.schemas.runs import Aggregation, TrainingPlan
from shared.schemas.states import NodeState, RoundKind, RoundState, RunState, UpdateStatus


class NodeUpdateView(_Strict):
    node: str
    status: UpdateStatus
    detail: str | None
    num_samples: int
    sha256: str
    accepted_at: datetime
    metrics: UpdateMetrics
    privacy: PrivacySpend | None
    privacy_total: PrivacyTotal | None


class RoundView(_Strict):
    run_id: int
    round: int
    kind: RoundKind
    state: RoundState
    attempt: int
    base_model: str
    result_model: str | None
    expected_nodes: list[str]
    reported_nodes: list[str]
    """Nodes whose update (or evaluation) was accepted."""
    declined_nodes: list[str]
    num_samples: int
    opened_at: datetime
    deadline: datetime
    closed_at: datetime | None
    detail: str | None
    mean_dice_global: RegionDice | None
    """Mean over nodes of the base model's Dice on their validation splits."""
    mean_dice_local: RegionDice | None
    """Mean over nodes of the locally trained models' Dice."""
    mean_hd95_global: RegionDistance | None = None
    """Mean over nodes of the base model's HD95 in mm (runs with ``plan.hd95``)."""
    mean_hd95_local: RegionDistance | None = None
    """Mean over nodes of the locally trained models' HD95 in mm."""
    updates: list[NodeUpdateView]


class RunView(_Strict):
    id: int
    name: str
    state: RunState
    rounds: int
    current_round: int | None
    expected_nodes: list[str]
    min_nodes: int
    model: ModelConfig
    plan: TrainingPlan
    privacy: PrivacyPolicy
    aggregation: Aggregation = Aggregation()
    global_model: str
    created_at: datetime
    detail: str | None


class NodeView(_Strict):
    name: str
    role: Role
    software_version: str | None
    device: str | None
    num_train_cases: int | None
    last_seen: datetime | None
    rounds_joined: int
    privacy_total: PrivacyTotal | None
    """The newest cumulative spend the node reported (its own ledger, all runs)."""
    privacy_epsilon_max: float | None = None
    """The highest cumulative epsilon the node ever reported (None: none, or unbounded)."""
    ledger_regression: str | None = None
    """Set when a report went below that highest figure or came from another ledger."""
    state: NodeState = NodeState.OK
    state_detail: str | None = None
    """Why the node is in ``state`` (the failure it reported, the round it missed, ...)."""
    last_error: str | None = None
    """The newest failure the node reported, kept after it recovered."""
    last_error_at: datetime | None = None


class Health(_Strict):
    status: str
    version: str


class ErrorBody(_Strict):
    detail: str
    code: str
    """Stable machine-readable code (shared/errors.py); clients act on it, not on ``detail``."""
