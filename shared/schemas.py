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


class TrainingPlan(_Strict):
    """How each node trains locally in one round."""

    local_epochs: int = Field(default=1, ge=1, le=1000)
    max_steps: int | None = Field(default=None, ge=1, description="stop an epoch early")
    learning_rate: float = Field(default=1e-4, gt=0.0, le=1.0)
    batch_size: int = Field(default=1, ge=1, le=64)
    crop_size: tuple[int, int, int] = (128, 128, 128)
    seed: int = Field(default=0, ge=0)


class RegionDice(_Strict):
    """Dice per tumour region and their mean, each in [0, 1]."""

    tc: float = Field(ge=0.0, le=1.0)
    wt: float = Field(ge=0.0, le=1.0)
    et: float = Field(ge=0.0, le=1.0)
    mean: float = Field(ge=0.0, le=1.0)


class UpdateMetrics(_Strict):
    """What a node measured in one round on its own validation split."""

    dice_global: RegionDice | None = None
    """The received global model, before local training."""
    dice_local: RegionDice | None = None
    """The locally trained model, after local training."""
    train_loss: float | None = None
    train_seconds: float | None = Field(default=None, ge=0.0)


class UpdateManifest(_Strict):
    """Binds an update to its task; carried inside the safetensors ``__metadata__``."""

    run_id: int = Field(ge=1)
    round: int = Field(ge=1)
    task_nonce: str = Field(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")
    base_model: str = Field(pattern=SHA256_PATTERN)
    num_samples: int = Field(ge=1)
    metrics: UpdateMetrics = UpdateMetrics()


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


class NodeUpdateView(_Strict):
    node: str
    num_samples: int
    sha256: str
    accepted_at: datetime
    metrics: UpdateMetrics


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
    num_samples: int
    opened_at: datetime
    deadline: datetime
    closed_at: datetime | None
    detail: str | None
    mean_dice_global: RegionDice | None
    """Mean over nodes of the base model's Dice on their validation splits."""
    mean_dice_local: RegionDice | None
    """Mean over nodes of the locally trained models' Dice."""
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


class Health(_Strict):
    status: str
    version: str


class ErrorBody(_Strict):
    detail: str
