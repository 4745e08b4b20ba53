"""The whole federation as real processes: aggregator under uvicorn, nodes training."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from services.demo.processes import Kit, node_env, spawn, stop
from services.node.data.synthetic_sites import write_site
from shared.model import ModelConfig
from shared.schemas import RoundView, RunCreate, RunView, TrainingPlan
from tests.e2e.conftest import AggregatorProcess

pytestmark = pytest.mark.slow


def test_two_nodes_complete_two_rounds_and_the_model_changes(
    aggregator: AggregatorProcess, tmp_path: Path
) -> None:
    names = ["site-1", "site-2"]
    for index, name in enumerate(names, start=1):
        write_site(tmp_path / "data" / name, index, 3, (24, 24, 24), seed=5)
    request = RunCreate(
        rounds=2,
        expected_nodes=names,
        min_nodes=2,
        round_timeout_s=300,
        model=ModelConfig(init_filters=8),
        plan=TrainingPlan(max_steps=2, learning_rate=1e-3, crop_size=(24, 24, 24), seed=1),
    )
    with aggregator.client("admin") as admin:
        assert admin.post("/api/v1/runs", json=request.model_dump(mode="json")).status_code == 201
        nodes = [
            spawn(
                "services.node.main",
                node_env(
                    Kit.of(aggregator.pki_dir, name),
                    aggregator.url,
                    tmp_path / "data" / name,
                    tmp_path / "nodes" / name,
                    OMP_NUM_THREADS="1",
                    FEDSEG_VAL_FRACTION="0.34",
                    # Case counts are told only where the hospital opts in.
                    FEDSEG_ANNOUNCE_CASE_COUNTS="1" if name == "site-2" else "0",
                ),
                tmp_path / f"{name}.log",
            )
            for name in names
        ]
        try:
            for _ in range(600):
                run = RunView.model_validate(admin.get("/api/v1/runs/1").json())
                if run.state != "running":
                    break
                time.sleep(0.5)
            exits = [n.wait(60) for n in nodes]
        finally:
            for n in nodes:
                stop(n)
        logs = "\n".join((tmp_path / f"{name}.log").read_text()[-2000:] for name in names)
        assert run.state == "completed", logs
        assert exits == [0, 0], logs
        rounds = [RoundView.model_validate(r) for r in admin.get("/api/v1/rounds").json()]
    assert [(r.round, r.kind, r.state) for r in rounds] == [
        (1, "train", "closed"),
        (2, "train", "closed"),
        (3, "evaluate", "closed"),
    ]
    first, second, evaluation = rounds
    assert first.reported_nodes == second.reported_nodes == names
    assert first.num_samples == second.num_samples == 4  # 2 training cases per site
    # Each training round published a new global model, which the next round started from.
    assert first.result_model != first.base_model
    assert second.base_model == first.result_model
    assert second.result_model != second.base_model
    assert evaluation.base_model == second.result_model == run.global_model
    for r in (first, second):
        assert r.mean_dice_global is not None
        assert r.mean_dice_local is not None
        assert all(u.metrics.train_loss is not None for u in r.updates)
    assert evaluation.mean_dice_global is not None
    with aggregator.client("site-1") as node:
        listed = {n["name"]: n for n in node.get("/api/v1/nodes").json()}
    assert listed["site-1"]["rounds_joined"] == 3
    assert listed["site-2"]["num_train_cases"] == 2
    assert listed["site-1"]["num_train_cases"] is None
