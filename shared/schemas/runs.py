"""How a run is configured: the local training plan and an admin's request for a run."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, Strict

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
    seed: Seed = 0
