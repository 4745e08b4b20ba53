"""A node whose budget cannot hold the rest of a run declines up front, joins when it fits."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from services.demo.processes import Kit, node_env, spawn, stop
from services.node.data.synthetic_sites import write_site
from shared.model import ModelConfig
from shared.schemas import (
    Mechanism,
    NodeView,
    PrivacyPolicy,
    RoundView,
    RunCreate,
    RunView,
    TrainingPlan,
)
from tests.e2e.conftest import AggregatorProcess

pytestmark = pytest.mark.slow
EPSILON = 1000.0


@pytest.mark.parametrize("aggregator", ["httptools"], indirect=True)
def test_budget_exhaustion_declines_and_run_continues(
    aggregator: AggregatorProcess, tmp_path: Path
) -> None:
    names = ["site-1", "site-2", "site-3"]
    for index, name in enumerate(names, start=1):
        write_site(tmp_path / "data" / name, index, 2, (24, 24, 24), seed=3)
    request = RunCreate(
        rounds=3,
        expected_nodes=names,
        min_nodes=2,
        round_timeout_s=300,
        model=ModelConfig(init_filters=8),
        plan=TrainingPlan(max_steps=1, crop_size=(24, 24, 24)),
        privacy=PrivacyPolicy(mechanism=Mechanism.SVT, fraction=0.05, clip=1e-3, epsilon=EPSILON),
    )
    budgets = {"site-3": str(1.5 * EPSILON)}  # room for one release: the last round's
    with aggregator.client("admin") as admin:
        assert admin.post("/api/v1/runs", json=request.model_dump(mode="json")).status_code == 201
        nodes = []
        for name in names:
            extra = {"FEDSEG_PRIVACY_BUDGET_EPSILON": budgets[name]} if name in budgets else {}
            env = node_env(
                Kit.of(aggregator.pki_dir, name), aggregator.url, tmp_path / "data" / name,
                tmp_path / "nodes" / name, OMP_NUM_THREADS="1", FEDSEG_VAL_FRACTION="0.5",
                **extra,
            )  # fmt: skip
            nodes.append(spawn("services.node.main", env, tmp_path / f"{name}.log"))
        try:
            for _ in range(600):
                run = RunView.model_validate(admin.get("/api/v1/runs/1").json())
                if run.state != "running":
                    break
                time.sleep(0.5)
        finally:
            for n in nodes:
                stop(n)
        logs = "\n".join((tmp_path / f"{n}.log").read_text()[-1500:] for n in names)
        assert run.state == "completed", logs
        rounds = [RoundView.model_validate(r) for r in admin.get("/api/v1/rounds").json()]
        listed = {
            v.name: v
            for v in (NodeView.model_validate(n) for n in admin.get("/api/v1/nodes").json())
        }
    first, second, third = rounds[:3]
    # The whole rest of the run is checked before training: 3 and then 2 releases do not
    # fit, the last round's one does. The node never finds its budget gone half way.
    assert (first.reported_nodes, first.declined_nodes) == (["site-1", "site-2"], ["site-3"])
    assert (second.reported_nodes, second.declined_nodes) == (["site-1", "site-2"], ["site-3"])
    assert third.reported_nodes == names
    refusals = [next(u for u in r.updates if u.node == "site-3").detail for r in (first, second)]
    assert refusals == [
        "privacy budget exhausted: the rest of this run would bring the cumulative epsilon "
        f"to {n * EPSILON:g}, over the budget of {1.5 * EPSILON:g}"
        for n in (3, 2)
    ]
    for update in third.updates:
        assert update.privacy is not None
        assert update.privacy.mechanism == "svt"
        assert update.privacy.epsilon == pytest.approx(EPSILON)
    assert listed["site-3"].privacy_total is not None
    assert listed["site-3"].privacy_total.epsilon == pytest.approx(EPSILON)
    assert listed["site-1"].privacy_total is not None
    assert listed["site-1"].privacy_total.epsilon == pytest.approx(3 * EPSILON)
    assert listed["site-1"].ledger_regression is None
