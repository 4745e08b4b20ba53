"""kill -9 the aggregator mid-round: accepted updates survive and are counted exactly once."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import httpx
import pytest
import torch

from services.demo.processes import stop
from shared.model import ModelConfig
from shared.schemas import RoundView, RunView, Task, TaskPoll
from shared.tensors import load_file, to_bytes
from tests.e2e.conftest import AggregatorProcess, start_aggregator
from tests.services.aggregator.support import tiny_run, update_for

pytestmark = pytest.mark.slow
OCTET = {"content-type": "application/octet-stream"}


def _task(client: httpx.Client) -> Task:
    poll = TaskPoll.model_validate(client.get("/api/v1/tasks/next").json())
    assert poll.task is not None
    return poll.task


def _base(client: httpx.Client, sha: str, tmp_path: Path) -> dict[str, torch.Tensor]:
    data = client.get(f"/api/v1/models/{sha}").content
    assert hashlib.sha256(data).hexdigest() == sha
    path = tmp_path / f"{sha}.safetensors"
    path.write_bytes(data)
    return load_file(path)


def _upload(client: httpx.Client, task: Task, body: bytes) -> httpx.Response:
    return client.put(
        f"/api/v1/runs/{task.run_id}/rounds/{task.round}/update", content=body, headers=OCTET
    )


def test_kill_nine_mid_round_then_restart_counts_each_update_once(
    pki_dir: Path, tmp_path: Path
) -> None:
    agg = start_aggregator(pki_dir, tmp_path)
    try:
        with agg.client("admin") as admin:
            run = tiny_run(expected_nodes=["site-1", "site-2", "site-3"], min_nodes=3, rounds=1)
            assert admin.post("/api/v1/runs", json=run.model_dump(mode="json")).status_code == 201
        bodies: dict[str, bytes] = {}
        tasks: dict[str, Task] = {}
        base: dict[str, torch.Tensor] = {}
        for weight, name in enumerate(("site-1", "site-2", "site-3"), start=1):
            with agg.client(name) as node:
                tasks[name] = _task(node)
                base = _base(node, tasks[name].base_model, tmp_path)
                delta = {k: torch.full_like(v, float(weight)) for k, v in base.items()}
                bodies[name] = update_for(tasks[name], delta, num_samples=weight)
        for name in ("site-1", "site-2"):
            with agg.client(name) as node:
                assert _upload(node, tasks[name], bodies[name]).status_code == 201

        agg.kill()
        agg.start()  # same state folder, same port

        with agg.client("admin") as admin:
            (first,) = [RoundView.model_validate(r) for r in admin.get("/api/v1/rounds").json()][:1]
        assert (first.state, first.reported_nodes) == ("open", ["site-1", "site-2"])
        with agg.client("site-2") as node:
            # A node that did not see its answer before the crash retries: same receipt, once.
            retry = _upload(node, tasks["site-2"], bodies["site-2"])
            assert retry.status_code == 200
        with agg.client("site-3") as node:
            assert _task(node) == tasks["site-3"]  # the same task survives the restart
            assert _upload(node, tasks["site-3"], bodies["site-3"]).status_code == 201

        with agg.client("admin") as admin:
            for _ in range(100):
                rounds = [RoundView.model_validate(r) for r in admin.get("/api/v1/rounds").json()]
                if rounds[0].state == "closed":
                    break
                time.sleep(0.1)
            first = rounds[0]
            assert first.state == "closed"
            assert first.num_samples == 1 + 2 + 3
            merged = _base(admin, first.result_model or "", tmp_path)
            run_view = RunView.model_validate(admin.get("/api/v1/runs/1").json())
        assert run_view.global_model == first.result_model
        # (1*1 + 2*2 + 3*3) / 6 = 14/6: each accepted update counted exactly once.
        for name, tensor in base.items():
            torch.testing.assert_close(merged[name], tensor + 14 / 6, rtol=0, atol=1e-5)
        assert to_bytes(merged)  # the published model is a readable safetensors file
    finally:
        stop(agg.process)


def _full_size_round(
    agg: AggregatorProcess, tmp_path: Path
) -> tuple[dict[str, Task], dict[str, dict[str, torch.Tensor]]]:
    """A run of the full 4.7 M-parameter model; each site's task and its seeded delta."""
    with agg.client("admin") as admin:
        run = tiny_run(expected_nodes=["site-1", "site-2", "site-3"], min_nodes=3, rounds=1,
                       model=ModelConfig())  # fmt: skip
        assert admin.post("/api/v1/runs", json=run.model_dump(mode="json")).status_code == 201
    tasks: dict[str, Task] = {}
    deltas: dict[str, dict[str, torch.Tensor]] = {}
    for i, name in enumerate(("site-1", "site-2", "site-3")):
        with agg.client(name) as node:
            tasks[name] = _task(node)
            base = _base(node, tasks[name].base_model, tmp_path)
        gen = torch.Generator().manual_seed(i)
        deltas[name] = {
            k: (torch.randn(v.shape, generator=gen) * 10.0 ** (2 * i - 3)).to(v.dtype)
            if v.is_floating_point() else torch.zeros_like(v)
            for k, v in base.items()
        }  # fmt: skip
    return tasks, deltas


def _closed_model(agg: AggregatorProcess) -> str:
    with agg.client("admin") as admin:
        for _ in range(300):
            first = RoundView.model_validate(admin.get("/api/v1/rounds").json()[0])
            if first.state == "closed":
                assert first.result_model is not None
                return first.result_model
            time.sleep(0.1)
    raise AssertionError("the round did not close")


def test_kill_nine_while_an_update_is_folded_in_publishes_the_same_bits(
    pki_dir: Path, tmp_path: Path
) -> None:
    """The running sum is in memory only; a restart rebuilds it from the stored updates."""
    crashed = start_aggregator(pki_dir, tmp_path / "crashed")
    try:
        tasks, deltas = _full_size_round(crashed, tmp_path)
        for weight, name in enumerate(("site-1", "site-2"), start=1):
            body = update_for(tasks[name], deltas[name], num_samples=weight)
            with crashed.client(name) as node:
                assert _upload(node, tasks[name], body).status_code == 201
        crashed.kill()  # at once: site-2's update is being added to the running sum
        crashed.start()
        body = update_for(tasks["site-3"], deltas["site-3"], num_samples=3)
        with crashed.client("site-3") as node:
            assert _upload(node, tasks["site-3"], body).status_code == 201
        after_crash = _closed_model(crashed)
    finally:
        stop(crashed.process)
    clean = start_aggregator(pki_dir, tmp_path / "clean")
    try:
        tasks, _ = _full_size_round(clean, tmp_path)
        for weight, name in ((3, "site-3"), (1, "site-1"), (2, "site-2")):  # another order
            body = update_for(tasks[name], deltas[name], num_samples=weight)
            with clean.client(name) as node:
                assert _upload(node, tasks[name], body).status_code == 201
        assert _closed_model(clean) == after_crash
    finally:
        stop(clean.process)
