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
from services.node.runner import LocalData, NodeRunner
from shared.schemas import RunCreate, Task, TaskPoll, TrainingPlan
from shared.tensors import read_manifest
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


def _runner(http: TestClient, data: LocalData, state: Path) -> NodeRunner:
    client = AggregatorClient(http, max_attempts=1)
    return NodeRunner(client, data, state, torch.device("cpu"), "site-1")


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
    assert update.num_samples == 1  # max_steps=1, batch 1: one distinct case trained on
    assert update.metrics.dice_global is not None
    assert update.metrics.dice_local is not None
    assert update.metrics.hd95_global is None  # the plan did not ask for it
    assert list((tmp_path / "pending").iterdir()) == []  # nothing left to resend


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
def test_restarted_node_resends_its_pending_update_without_retraining(
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
    # Simulate a crash after writing the update but before hearing the answer: put the
    # same bytes back as pending; a fresh runner with no training data must just resend.
    blob = federation.blobs.open_path(accepted)
    pending = tmp_path / "pending" / f"{task.task_nonce}.safetensors"
    pending.write_bytes(blob.read_bytes())
    assert read_manifest(pending).task_nonce == task.task_nonce
    fresh = _runner(http, LocalData(train=[], val=[]), tmp_path)
    fresh.handle(task)
    assert [u.sha256 for u in federation.list_rounds()[0].updates] == [accepted]
    assert not pending.exists()
