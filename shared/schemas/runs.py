"""How a run is configured: the local training plan and an admin's request for a run."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field, Strict, model_validator

from shared.model import ModelConfig
from shared.schemas.base import NodeName, Seed, _Strict
from shared.schemas.privacy import PrivacyPolicy
from shared.schemas.states import DeadlinePolicy

MAX_ROUND_TIMEOUT_S = 30 * 24 * 3600.0
"""A round may wait at most 30 days for its nodes."""


class TrainingPlan(_Strict):
    """How each node trains locally in one round, and what its validation measures."""

    local_epochs: Annotated[int, Strict()] = Field(default=1, ge=1, le=1000)
    max_steps: Annotated[int, Strict()] | None = Field(
        default=None, ge=1, le=1_000_000, description="stop an epoch early"
    )
    learning_rate: float = Field(default=1e-4, gt=0.0, le=1.0)
    batch_size: Annotated[int, Strict()] = Field(default=1, ge=1, le=64)
    crop_size: tuple[int, int, int] = (128, 128, 128)
    seed: Seed = 0
    hd95: bool = False
    """Validation also measures the 95th-percentile Hausdorff distance (slower)."""


class AggregationName(StrEnum):
    """How a run turns its accepted updates into the next model (aggregator.aggregation)."""

    FEDAVG = "fedavg"
    NORM_BOUNDED = "norm-bounded"
    TRIMMED_MEAN = "trimmed-mean"
    MEDIAN = "median"
    FEDADAM = "fedadam"


class Aggregation(_Strict):
    """A run's aggregation strategy and its settings (each used by one strategy only)."""

    name: AggregationName = AggregationName.FEDAVG
    trim_fraction: float = Field(default=0.2, ge=0.0, lt=0.5)
    """trimmed-mean: the fraction beta of values dropped at each end, per component."""
    max_norm: float | None = Field(default=None, gt=0.0, le=1e6)
    """norm-bounded: every update's L2 norm is clipped to this before the weighted mean."""
    server_lr: float = Field(default=0.01, gt=0.0, le=10.0)
    """fedadam: the server's step size eta (Reddi et al. 2021)."""
    beta1: float = Field(default=0.9, ge=0.0, lt=1.0)
    """fedadam: decay of the first moment."""
    beta2: float = Field(default=0.99, ge=0.0, lt=1.0)
    """fedadam: decay of the second moment."""
    tau: float = Field(default=1e-3, gt=0.0, le=1.0)
    """fedadam: the adaptivity floor added to sqrt(v) (Reddi et al.'s tau)."""

    @model_validator(mode="after")
    def _needs_its_setting(self) -> Self:
        if self.name is AggregationName.NORM_BOUNDED and self.max_norm is None:
            raise ValueError("the norm-bounded strategy needs max_norm (the L2 bound per update)")
        return self


class RunCreate(_Strict):
    """An admin's request for a new training run."""

    name: str = Field(default="run", min_length=1, max_length=64)
    rounds: Annotated[int, Strict()] = Field(ge=1, le=10_000)
    expected_nodes: list[NodeName] = Field(min_length=1, max_length=1000)
    min_nodes: Annotated[int, Strict()] = Field(default=1, ge=1, le=1000)
    round_timeout_s: float = Field(default=3600.0, gt=0.0, le=MAX_ROUND_TIMEOUT_S)
    deadline_policy: DeadlinePolicy = DeadlinePolicy.REOPEN
    max_round_attempts: Annotated[int, Strict()] = Field(default=3, ge=1, le=100)
    model: ModelConfig = ModelConfig()
    plan: TrainingPlan = TrainingPlan()
    privacy: PrivacyPolicy = PrivacyPolicy()
    aggregation: Aggregation = Aggregation()
    seed: Seed = 0
