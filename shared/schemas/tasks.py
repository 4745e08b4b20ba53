"""What the aggregator hands a node: its task in a round, or why there is none yet."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from shared.model import ModelConfig
from shared.schemas.base import SHA256_PATTERN, _Strict
from shared.schemas.privacy import PrivacyPolicy
from shared.schemas.runs import TrainingPlan
from shared.schemas.states import RoundKind, RunState


class Task(_Strict):
    """One node's work in one round."""

    run_id: int
    round: int
    kind: RoundKind
    rounds: int = Field(ge=1)
    """The run's number of training rounds: a node checks the whole run against its budget."""
    task_nonce: str
    base_model: str = Field(pattern=SHA256_PATTERN)
    model: ModelConfig
    plan: TrainingPlan
    privacy: PrivacyPolicy
    deadline: datetime


class TaskPoll(_Strict):
    """Answer to a node's long-poll: its task, or none yet and why."""

    task: Task | None
    run_id: int | None
    run_state: RunState | None
