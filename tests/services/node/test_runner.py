"""The node's round loop against the real aggregator app (in-process transport)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from starlette.testclient import TestClient

from services.aggregator.federation import Federation
from services.node.client import AggregatorClient
from services.node.data.brats import find_cases, load_cases
from services.node.data.synthetic_sites import write_site
from services.node.ledger import PrivacyLedger
from services.node.runner import LocalData, NodeRunner, PrivacyGuard
from shared.schemas import (
    Mechanism,
    MetricsRelease,
    PrivacyPolicy,
    RunCreate,
    Task,
    TaskPoll,
    TrainingPlan,
    UpdateMetrics,
)
from tests.services.aggregator.support import tiny_run

ClientAs = Callable[..., TestClient]


@pytest.fixture(scope="module")
def local_data(tmp_path_factory: pytest.TempPathFactory) -> LocalData:
    root = tmp_path_factory.mktemp("site")
    files = write_site(root, 1, 3, (24, 24, 24), seed=2)
    cases = load_cases(find_cases(root))
    assert len(files) == 3
    return LocalData(train=cases[:2], val=cases[2:])


def _first_task(client_as: ClientAs, run: RunCreate | None = None) -> tuple[TestClient, Task]:
    """Create `run` (a tiny one by default) and take site-1's round-1 task."""
    request = tiny_run() if run is None else run
    client_as("admin").post("/api/v1/runs", json=request.model_dump(mode="json"))
    http = client_as("site-1")
    task = TaskPoll.model_validate(http.get("/api/v1/tasks/next").json()).task
    assert task is not None
    return http, task


FEDERATION = "f" * 64


def _runner(
    http: TestClient,
    data: LocalData,
    state: Path,
    local: PrivacyPolicy | None = None,
    budget: float | None = None,
) -> NodeRunner:
    client = AggregatorClient(http, max_attempts=1)
    guard = PrivacyGuard(PrivacyLedger(state), FEDERATION, local, budget_epsilon=budget)
    return NodeRunner(client, data, state, torch.device("cpu"), "site-1", guard)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_node_trains_and_its_update_is_accepted(
    client_as: ClientAs,
    federation: Federation,
    local_data: LocalData,
    tmp_path: Path,
    database_url: str,
) -> None:
    http, task = _first_task(client_as)
    _runner(http, local_data, tmp_path).handle(task)
    (first, *_) = federation.list_rounds()
    assert first.reported_nodes == ["site-1"]
    (update,) = first.updates
    assert update.num_samples == 2  # max_steps=4, batch 1: both training cases trained on
    assert update.metrics.dice_global is not None
    assert update.metrics.dice_local is not None
    assert update.metrics.hd95_global is None  # the plan did not ask for it
    (entry,) = PrivacyLedger(tmp_path).entries()  # the release is on the node's ledger
    assert (entry.key.run_id, entry.key.round, entry.sha256) == (1, 1, update.sha256)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_plan_asking_for_hd95_gets_it_in_the_metrics_and_the_round_view(
    client_as: ClientAs,
    federation: Federation,
    local_data: LocalData,
    tmp_path: Path,
    database_url: str,
) -> None:
    run = tiny_run(plan=TrainingPlan(max_steps=1, crop_size=(8, 8, 8), hd95=True))
    http, task = _first_task(client_as, run)
    assert task.plan.hd95
    _runner(http, local_data, tmp_path).handle(task)
    (first, *_) = federation.list_rounds()
    (update,) = first.updates
    hd95_global, hd95_local = update.metrics.hd95_global, update.metrics.hd95_local
    assert hd95_global is not None
    assert hd95_local is not None
    # Distances in mm within a 24^3 volume at 1 mm: at most its diagonal.
    assert 0.0 <= hd95_local.mean <= 24 * 3**0.5
    assert first.mean_hd95_global == hd95_global
    assert first.mean_hd95_local == hd95_local


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_restarted_node_resends_its_recorded_release_without_retraining(
    client_as: ClientAs,
    federation: Federation,
    local_data: LocalData,
    tmp_path: Path,
    database_url: str,
) -> None:
    http, task = _first_task(client_as)
    runner = _runner(http, local_data, tmp_path)
    runner.handle(task)
    accepted = federation.list_rounds()[0].updates[0].sha256
    # A fresh runner with no training data gets the same task (a restart, or a re-issue):
    # it must send the recorded bytes again, not train (it has nothing to train on).
    fresh = _runner(http, LocalData(train=[], val=[]), tmp_path)
    fresh.handle(task)
    assert [u.sha256 for u in federation.list_rounds()[0].updates] == [accepted]
    assert len(PrivacyLedger(tmp_path).entries()) == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_under_dp_the_update_carries_a_public_weight_and_no_measured_numbers(
    client_as: ClientAs,
    federation: Federation,
    local_data: LocalData,
    tmp_path: Path,
    database_url: str,
) -> None:
    svt = PrivacyPolicy(mechanism=Mechanism.SVT, fraction=0.1, clip=1e-3, epsilon=100.0)
    plan = TrainingPlan(max_steps=3, crop_size=(8, 8, 8), hd95=True)
    http, task = _first_task(client_as, tiny_run(privacy=svt, plan=plan))
    _runner(http, local_data, tmp_path).handle(task)
    (update,) = federation.list_rounds()[0].updates
    assert update.num_samples == 3  # plan.max_steps, not the private count of cases
    assert update.metrics == UpdateMetrics(protection=MetricsRelease.WITHHELD)
    assert update.privacy_total is not None
    assert update.privacy_total.epsilon == 100.0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_node_declines_at_round_one_a_run_that_would_pass_its_budget(
    client_as: ClientAs,
    federation: Federation,
    local_data: LocalData,
    tmp_path: Path,
    database_url: str,
) -> None:
    svt = PrivacyPolicy(mechanism=Mechanism.SVT, fraction=0.1, clip=1e-3, epsilon=100.0)
    http, task = _first_task(client_as, tiny_run(privacy=svt, rounds=3))
    _runner(http, local_data, tmp_path, budget=250.0).handle(task)
    (update,) = federation.list_rounds()[0].updates
    assert update.status == "declined"
    assert update.detail == (
        "privacy budget exhausted: the rest of this run would bring the cumulative epsilon "
        "to 300, over the budget of 250"
    )
    assert PrivacyLedger(tmp_path).entries() == []  # nothing was released


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_node_declines_a_mechanism_its_local_policy_does_not_allow(
    client_as: ClientAs,
    federation: Federation,
    local_data: LocalData,
    tmp_path: Path,
    database_url: str,
) -> None:
    http, task = _first_task(client_as)  # the run asks for no protection at all
    local = PrivacyPolicy(mechanism=Mechanism.GAUSSIAN, noise_multiplier=1.0, l2_clip=0.1)
    _runner(http, local_data, tmp_path, local=local).handle(task)
    (update,) = federation.list_rounds()[0].updates
    assert update.status == "declined"
    assert update.detail == (
        "the run's privacy policy cannot be applied here: the run asks for the none mechanism "
        "but this hospital's local policy allows only gaussian"
    )
