"""Wire schemas shared by the aggregator and the node: every JSON body has a model here."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.identity import NAME_PATTERN, Role
from shared.model import ModelConfig

SHA256_PATTERN = r"^[0-9a-f]{64}$"
API_PREFIX = "/api/v1"
MANIFEST_KEY = "fedseg.manifest"
"""Key of the JSON manifest in an update's safetensors ``__metadata__``."""


NodeName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]


class RunState(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    ABORTED = "aborted"


class RoundState(StrEnum):
    OPEN = "open"
    AGGREGATING = "aggregating"
    CLOSED = "closed"
    FAILED = "failed"
    ABORTED = "aborted"


class RoundKind(StrEnum):
    """A training round produces a new model; the final evaluation round only measures it."""

    TRAIN = "train"
    EVALUATE = "evaluate"


class DeadlinePolicy(StrEnum):
    """What happens when a round's deadline passes with fewer than ``min_nodes`` updates."""

    REOPEN = "reopen"
    FAIL = "fail"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Mechanism(StrEnum):
    """What protects a released update (docs/privacy.md explains each)."""

    NONE = "none"
    PARTIAL = "partial"
    """Largest-magnitude fraction only (Shokri and Shmatikov 2015); not differential privacy."""
    SVT = "svt"
    """Sparse Vector Technique (Lyu, Su and Li 2017): epsilon-DP per round."""
    GAUSSIAN = "gaussian"
    """L2 clipping plus Gaussian noise (McMahan et al. 2018): (epsilon, delta)-DP."""


class SelectionScope(StrEnum):
    MODEL = "model"
    TENSOR = "tensor"


class PrivacyPolicy(_Strict):
    """How a node must protect its update; set per run, tightened by a node's local policy."""

    mechanism: Mechanism = Mechanism.NONE
    fraction: float = Field(default=0.1, gt=0.0, le=1.0)
    """partial, svt: share at most ceil(fraction * n) components."""
    scope: SelectionScope = SelectionScope.MODEL
    """partial: select over the whole model or within each tensor."""
    clip: float | None = Field(default=None, gt=0.0)
    """partial, svt: clip each component to [-clip, clip] (gamma). Required for svt."""
    epsilon: float | None = Field(default=None, gt=0.0)
    """svt: the whole per-round privacy loss (threshold + queries + release)."""
    threshold: float | None = Field(default=None, ge=0.0)
    """svt: the threshold tau on clipped magnitudes; None derives it from clip."""
    noise_multiplier: float | None = Field(default=None, gt=0.0)
    """gaussian: sigma; the noise standard deviation is sigma * l2_clip."""
    l2_clip: float | None = Field(default=None, gt=0.0)
    """gaussian: the update's L2 norm is clipped to this (S)."""
    delta: float = Field(default=1e-5, gt=0.0, lt=1.0)
    """gaussian: the delta at which epsilon is reported."""
    exclude: tuple[str, ...] = ()
    """Tensor names, or regular expressions (full match), that never leave the node."""


class PrivacySpend(_Strict):
    """What one release cost, as the mechanism states it; epsilon None means no DP claim."""

    mechanism: Mechanism
    epsilon: float | None = Field(default=None, ge=0.0)
    delta: float = Field(default=0.0, ge=0.0, lt=1.0)
    accounting: str
    """How epsilon was derived, e.g. 'SVT (Lyu et al. 2017, Alg. 1)' or 'RDP (Opacus)'."""
    parameters: dict[str, float | int | str | None] = Field(default_factory=dict)


class TrainingPlan(_Strict):
    """How each node trains locally in one round, and what its validation measures."""

    local_epochs: int = Field(default=1, ge=1, le=1000)
    max_steps: int | None = Field(default=None, ge=1, description="stop an epoch early")
    learning_rate: float = Field(default=1e-4, gt=0.0, le=1.0)
    batch_size: int = Field(default=1, ge=1, le=64)
    crop_size: tuple[int, int, int] = (128, 128, 128)
    seed: int = Field(default=0, ge=0)
    hd95: bool = False
    """Validation also measures the 95th-percentile Hausdorff distance (slower)."""


class RegionDice(_Strict):
    """Dice per tumour region and their mean, each in [0, 1]."""

    tc: float = Field(ge=0.0, le=1.0)
    wt: float = Field(ge=0.0, le=1.0)
    et: float = Field(ge=0.0, le=1.0)
    mean: float = Field(ge=0.0, le=1.0)


class RegionDistance(_Strict):
    """A surface distance per tumour region and their mean, in millimetres."""

    tc: float = Field(ge=0.0)
    wt: float = Field(ge=0.0)
    et: float = Field(ge=0.0)
    mean: float = Field(ge=0.0)


class UpdateMetrics(_Strict):
    """What a node measured in one round on its own validation split."""

    dice_global: RegionDice | None = None
    """The received global model, before local training."""
    dice_local: RegionDice | None = None
    """The locally trained model, after local training."""
    hd95_global: RegionDistance | None = None
    """HD95 of the received global model, when the plan asks for it."""
    hd95_local: RegionDistance | None = None
    """HD95 of the locally trained model, when the plan asks for it."""
    train_loss: float | None = None
    train_seconds: float | None = Field(default=None, ge=0.0)


class PrivacyTotal(_Strict):
    """A node's cumulative spend over every release it has made, from its own ledger."""

    epsilon: float | None = Field(ge=0.0)
    """None when some release carried no DP guarantee (infinite epsilon)."""
    delta: float = Field(ge=0.0, lt=1.0)
    releases: int = Field(ge=0)
    accounting: str


class UpdateManifest(_Strict):
    """Binds an update to its task; carried inside the safetensors ``__metadata__``.

    Tensors named in ``sparse`` travel as ``<name>::indices`` (int64 [k], strictly
    increasing flat positions) and ``<name>::values`` (float32 [k]); tensors named in
    ``excluded`` are absent. Every other tensor of the model travels dense.
    """

    run_id: int = Field(ge=1)
    round: int = Field(ge=1)
    task_nonce: str = Field(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")
    base_model: str = Field(pattern=SHA256_PATTERN)
    num_samples: int = Field(ge=1)
    metrics: UpdateMetrics = UpdateMetrics()
    sparse: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    privacy: PrivacySpend | None = None
    privacy_total: PrivacyTotal | None = None


class Decline(_Strict):
    """A node's refusal to release an update this round (e.g. its privacy budget is spent)."""

    run_id: int = Field(ge=1)
    round: int = Field(ge=1)
    task_nonce: str = Field(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")
    base_model: str = Field(pattern=SHA256_PATTERN)
    reason: str = Field(min_length=1, max_length=1000)
    privacy_total: PrivacyTotal | None = None


class Announcement(_Strict):
    """What a node tells the aggregator about itself when it starts."""

    software_version: str = Field(max_length=64)
    device: str = Field(max_length=64)
    num_train_cases: int = Field(ge=0)
    num_val_cases: int = Field(ge=0)


class RunCreate(_Strict):
    """An admin's request for a new training run."""

    name: str = Field(default="run", min_length=1, max_length=64)
    rounds: int = Field(ge=1, le=10_000)
    expected_nodes: list[NodeName] = Field(min_length=1, max_length=1000)
    min_nodes: int = Field(default=1, ge=1)
    round_timeout_s: float = Field(default=3600.0, gt=0.0)
    deadline_policy: DeadlinePolicy = DeadlinePolicy.REOPEN
    max_round_attempts: int = Field(default=3, ge=1)
    model: ModelConfig = ModelConfig()
    plan: TrainingPlan = TrainingPlan()
    privacy: PrivacyPolicy = PrivacyPolicy()
    seed: int = Field(default=0, ge=0)


class Task(_Strict):
    """One node's work in one round."""

    run_id: int
    round: int
    kind: RoundKind
    task_nonce: str
    base_model: str = Field(pattern=SHA256_PATTERN)
    model: ModelConfig
    plan: TrainingPlan
    privacy: PrivacyPolicy
    deadline: datetime


class EvaluationReport(_Strict):
    """A node's measurement of the final global model (evaluation rounds carry no tensors)."""

    run_id: int = Field(ge=1)
    round: int = Field(ge=1)
    task_nonce: str = Field(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")
    base_model: str = Field(pattern=SHA256_PATTERN)
    num_samples: int = Field(ge=0, description="validation cases measured")
    metrics: UpdateMetrics


class TaskPoll(_Strict):
    """Answer to a node's long-poll: its task, or none yet and why."""

    task: Task | None
    run_id: int | None
    run_state: RunState | None


class UpdateReceipt(_Strict):
    """The aggregator's answer to an accepted update; the same bytes get the same receipt."""

    run_id: int
    round: int
    node: str
    sha256: str
    num_samples: int
    accepted_at: datetime


class UpdateStatus(StrEnum):
    ACCEPTED = "accepted"
    DECLINED = "declined"


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


class Health(_Strict):
    status: str
    version: str


class ErrorBody(_Strict):
    detail: str
