"""Helpers for aggregator tests: a tiny run, a settable clock, upload bodies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import torch

from shared.model import ModelConfig
from shared.schemas import RunCreate, Task, TrainingPlan, UpdateManifest
from shared.tensors import update_bytes

TINY = ModelConfig(init_filters=8, blocks_down=(1, 1), blocks_up=(1,))


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def tiny_run(**overrides: object) -> RunCreate:
    fields: dict[str, object] = {
        "name": "test",
        "rounds": 2,
        "expected_nodes": ["site-1", "site-2"],
        "min_nodes": 1,
        "round_timeout_s": 60.0,
        "model": TINY,
        "plan": TrainingPlan(max_steps=4, crop_size=(8, 8, 8)),
        "seed": 7,
    }
    fields.update(overrides)
    return RunCreate.model_validate(fields)


def zero_delta(base_path: object) -> dict[str, torch.Tensor]:
    """A delta of zeros shaped like the model stored at ``base_path``."""
    from pathlib import Path

    from shared.tensors import load_file

    assert isinstance(base_path, Path)
    return {name: torch.zeros_like(t) for name, t in load_file(base_path).items()}


def update_for(
    task: Task,
    delta: dict[str, torch.Tensor],
    num_samples: int = 3,
    **manifest_overrides: object,
) -> bytes:
    """The bytes a node would upload for ``task``."""
    fields: dict[str, object] = {
        "run_id": task.run_id,
        "round": task.round,
        "task_nonce": task.task_nonce,
        "base_model": task.base_model,
        "num_samples": num_samples,
    }
    fields.update(manifest_overrides)
    return update_bytes(delta, UpdateManifest.model_validate(fields))
