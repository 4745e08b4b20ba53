"""Upload endpoint: idempotency, binding to the caller's task, and every rejection."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from sqlalchemy import func, select
from starlette.testclient import TestClient

from services.aggregator.federation import Federation
from services.aggregator.state.models import Update
from shared.schemas import Task, TaskPoll, UpdateManifest
from tests.services.aggregator.support import tiny_run, update_for, zero_delta

ClientAs = Callable[..., TestClient]
OCTET = {"content-type": "application/octet-stream"}


@pytest.fixture
def started(client_as: ClientAs, federation: Federation) -> dict[str, Task]:
    """A run over site-1 and site-2, each holding its round-1 task."""
    created = client_as("admin").post("/api/v1/runs", json=tiny_run().model_dump(mode="json"))
    assert created.status_code == 201, created.text
    tasks = {}
    for name in ("site-1", "site-2"):
        poll = TaskPoll.model_validate(client_as(name).get("/api/v1/tasks/next").json())
        assert poll.task is not None
        tasks[name] = poll.task
    return tasks


def _put(client: TestClient, task: Task, body: bytes) -> object:
    return client.put(f"/api/v1/runs/{task.run_id}/rounds/{task.round}/update", content=body,
                      headers=OCTET)  # fmt: skip


def _snapshot(federation: Federation) -> tuple[int, list[str]]:
    with federation._sessions() as session:
        rows = int(session.scalar(select(func.count()).select_from(Update)) or 0)
    files = sorted(
        str(p.relative_to(federation.blobs.root))
        for p in federation.blobs.root.rglob("*")
        if p.is_file()
    )
    return rows, files


def _base(federation: Federation, task: Task) -> Path:
    return federation.blobs.open_path(task.base_model)


def test_upload_accepted_then_same_bytes_idempotent(
    client_as: ClientAs, federation: Federation, started: dict[str, Task]
) -> None:
    task = started["site-1"]
    body = update_for(task, zero_delta(_base(federation, task)))
    first = _put(client_as("site-1"), task, body)
    again = _put(client_as("site-1"), task, body)
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json() == first.json()
    assert first.json()["node"] == "site-1"
    assert _snapshot(federation)[0] == 1


def test_upload_different_bytes_for_same_round_conflicts(
    client_as: ClientAs, federation: Federation, started: dict[str, Task]
) -> None:
    task = started["site-1"]
    delta = zero_delta(_base(federation, task))
    assert _put(client_as("site-1"), task, update_for(task, delta)).status_code == 201
    other = update_for(task, delta, num_samples=4)
    response = _put(client_as("site-1"), task, other)
    assert response.status_code == 409
    assert response.json()["detail"].startswith(
        "node site-1 already has a different update accepted for run 1 round 1"
    )


def test_node_cannot_upload_with_another_nodes_task(
    client_as: ClientAs, federation: Federation, started: dict[str, Task]
) -> None:
    stolen = started["site-1"]
    before = _snapshot(federation)
    response = _put(
        client_as("site-2"), stolen, update_for(stolen, zero_delta(_base(federation, stolen)))
    )
    assert response.status_code == 403
    assert response.json()["detail"] == (
        "task nonce does not match the task issued to node site-2 for round 1"
    )
    assert _snapshot(federation) == before


def test_a_node_outside_the_run_is_refused(
    client_as: ClientAs, federation: Federation, started: dict[str, Task]
) -> None:
    task = started["site-1"]
    before = _snapshot(federation)
    response = _put(
        client_as("site-3"), task, update_for(task, zero_delta(_base(federation, task)))
    )
    assert response.status_code == 409
    assert response.json()["code"] == "node_not_expected"
    assert _snapshot(federation) == before


def test_upload_for_round_not_given_is_refused(
    client_as: ClientAs, federation: Federation, started: dict[str, Task]
) -> None:
    task = started["site-1"]
    body = update_for(task, zero_delta(_base(federation, task)), round=2)
    response = client_as("site-1").put(
        "/api/v1/runs/1/rounds/2/update", content=body, headers=OCTET
    )
    assert response.status_code == 404
    assert response.json()["detail"] == "run 1 has no round 2"
    mismatched = client_as("site-1").put(
        "/api/v1/runs/1/rounds/1/update", content=body, headers=OCTET
    )
    assert mismatched.status_code == 400
    assert mismatched.json()["detail"] == (
        "the body is for run 1 round 2, but was sent to run 1 round 1"
    )


def test_admin_certificate_cannot_upload(
    client_as: ClientAs, federation: Federation, started: dict[str, Task]
) -> None:
    task = started["site-1"]
    response = _put(client_as("admin"), task, b"x")
    assert response.status_code == 403
    assert (
        response.json()["detail"] == "this endpoint needs a node certificate; admin has role admin"
    )


def _corrupt(kind: str, delta: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    name = next(iter(delta))
    bad = dict(delta)
    if kind == "missing":
        del bad[name]
    elif kind == "extra":
        bad["intruder.weight"] = torch.zeros(2)
    elif kind == "shape":
        bad[name] = torch.zeros(delta[name].numel() + 1)
    elif kind == "dtype":
        bad[name] = delta[name].to(torch.float64)
    elif kind == "nan":
        bad[name] = delta[name].clone().reshape(-1)
        bad[name][0] = float("nan")
        bad[name] = bad[name].reshape(delta[name].shape)
    return bad


@pytest.mark.parametrize(
    ("kind", "status", "detail_start"),
    [
        ("missing", 422, "update key set differs from the global model: missing "),
        (
            "extra",
            422,
            "update key set differs from the global model: "
            "missing none, unexpected 'intruder.weight'",
        ),
        ("shape", 422, "tensor "),
        ("dtype", 422, "tensor "),
        ("nan", 422, "tensor "),
    ],
)
def test_bad_tensors_rejected_and_nothing_changes(
    client_as: ClientAs,
    federation: Federation,
    started: dict[str, Task],
    kind: str,
    status: int,
    detail_start: str,
) -> None:
    task = started["site-1"]
    before = _snapshot(federation)
    delta = _corrupt(kind, zero_delta(_base(federation, task)))
    response = _put(client_as("site-1"), task, update_for(task, delta))
    assert response.status_code == status
    detail = response.json()["detail"]
    assert detail.startswith(detail_start)
    expected_tail = {
        "shape": "the global model's is",
        "dtype": "has dtype F64, the global model's is F32",
        "nan": "holds 1 non-finite values (NaN or inf)",
    }.get(kind)
    if expected_tail:
        assert expected_tail in detail
    assert _snapshot(federation) == before


def test_malformed_body_rejected(
    client_as: ClientAs, federation: Federation, started: dict[str, Task]
) -> None:
    task = started["site-1"]
    before = _snapshot(federation)
    response = _put(client_as("site-1"), task, b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("body is not a readable safetensors file: ")
    assert _snapshot(federation) == before


def test_update_without_manifest_rejected(
    client_as: ClientAs, federation: Federation, started: dict[str, Task]
) -> None:
    from shared.tensors import to_bytes

    task = started["site-1"]
    response = _put(client_as("site-1"), task, to_bytes(zero_delta(_base(federation, task))))
    assert response.status_code == 400
    assert response.json()["detail"] == "update has no 'fedseg.manifest' entry in its metadata"


def test_oversized_body_rejected_while_streaming(
    client_as: ClientAs, federation: Federation, started: dict[str, Task]
) -> None:
    before = _snapshot(federation)
    limit = 4 * 1024 * 1024

    def chunks() -> object:
        for _ in range(limit // 65536 + 2):
            yield b"\0" * 65536

    response = client_as("site-1").put(
        "/api/v1/runs/1/rounds/1/update", content=chunks(), headers=OCTET
    )
    assert response.status_code == 413
    assert response.json()["detail"] == (
        f"update body exceeds the limit of {limit} bytes; nothing was stored"
    )
    assert _snapshot(federation) == before


def test_oversized_declared_length_rejected_before_reading(
    client_as: ClientAs, federation: Federation, started: dict[str, Task]
) -> None:
    task = started["site-1"]
    body = b"\0" * (4 * 1024 * 1024 + 1)
    response = _put(client_as("site-1"), task, body)
    assert response.status_code == 413
    assert response.json()["detail"].startswith(f"update body of {len(body)} bytes exceeds")


def test_stale_base_model_rejected(
    client_as: ClientAs, federation: Federation, started: dict[str, Task]
) -> None:
    task = started["site-1"]
    before = _snapshot(federation)
    body = update_for(task, zero_delta(_base(federation, task)), base_model="0" * 64)
    response = _put(client_as("site-1"), task, body)
    assert response.status_code == 409
    assert response.json()["detail"] == (
        f"update was computed from model 000000000000…, but round 1's base model is "
        f"{task.base_model[:12]}…"
    )
    assert _snapshot(federation) == before


def test_wrong_content_type_rejected(
    client_as: ClientAs, federation: Federation, started: dict[str, Task]
) -> None:
    response = client_as("site-1").put(
        "/api/v1/runs/1/rounds/1/update",
        content=b"{}",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["detail"] == "an update must be sent as application/octet-stream"


def test_upload_after_round_closed_is_refused(
    client_as: ClientAs, federation: Federation, started: dict[str, Task]
) -> None:
    for name in ("site-1", "site-2"):
        task = started[name]
        assert (
            _put(
                client_as(name), task, update_for(task, zero_delta(_base(federation, task)))
            ).status_code
            == 201
        )
    federation.advance()
    federation.advance()
    # site-1's identical bytes still get their receipt; a changed update gets 409.
    task = started["site-1"]
    delta = zero_delta(_base(federation, task))
    assert _put(client_as("site-1"), task, update_for(task, delta)).status_code == 200
    assert (
        _put(client_as("site-1"), task, update_for(task, delta, num_samples=9)).status_code == 409
    )


def test_decline_is_recorded_once(
    client_as: ClientAs, federation: Federation, started: dict[str, Task]
) -> None:
    task = started["site-2"]
    body = {
        "run_id": task.run_id,
        "round": task.round,
        "task_nonce": task.task_nonce,
        "base_model": task.base_model,
        "reason": "privacy budget exhausted",
    }
    node = client_as("site-2")
    first = node.post("/api/v1/runs/1/rounds/1/decline", json=body)
    again = node.post("/api/v1/runs/1/rounds/1/decline", json=body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    other = node.post("/api/v1/runs/1/rounds/1/decline", json={**body, "reason": "changed my mind"})
    assert other.status_code == 409
    stolen = client_as("site-1").post("/api/v1/runs/1/rounds/1/decline", json=body)
    assert stolen.status_code == 403
    assert stolen.json()["detail"] == (
        "task nonce does not match the task issued to node site-1 for round 1"
    )
    rounds = client_as("admin").get("/api/v1/rounds").json()
    assert rounds[0]["declined_nodes"] == ["site-2"]


@pytest.mark.parametrize(
    ("metrics", "field"),
    [
        ('{"train_loss": Infinity}', "metrics.train_loss"),
        ('{"hd95_local": {"tc": 1, "wt": 2, "et": NaN, "mean": 1}}', "metrics.hd95_local.et"),
        ('{"hd95_local": {"tc": 1, "wt": 2, "et": 3e9, "mean": 1}}', "metrics.hd95_local.et"),
    ],
)
def test_non_finite_or_absurd_metrics_rejected_and_nothing_changes(
    client_as: ClientAs,
    federation: Federation,
    started: dict[str, Task],
    metrics: str,
    field: str,
) -> None:
    """JSON has no Infinity or NaN: stored, they would read back as null and break every
    round view that includes them."""
    from shared.schemas import MANIFEST_KEY
    from shared.tensors import to_bytes

    task = started["site-1"]
    before = _snapshot(federation)
    manifest = (
        f'{{"run_id": {task.run_id}, "round": {task.round}, "task_nonce": "{task.task_nonce}", '
        f'"base_model": "{task.base_model}", "num_samples": 3, "metrics": {metrics}}}'
    )
    body = to_bytes(zero_delta(_base(federation, task)), {MANIFEST_KEY: manifest})
    response = _put(client_as("site-1"), task, body)
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail.startswith("update manifest is invalid: 1 validation error for UpdateManifest")
    assert f"\n{field}\n" in detail
    assert _snapshot(federation) == before
    assert client_as("admin").get("/api/v1/rounds").status_code == 200


@pytest.mark.parametrize(
    ("error", "status", "words"),
    [(28, 507, "disk is full"), (30, 503, "could not write an upload")],  # ENOSPC, EROFS
)
def test_a_failing_disk_is_a_clear_status_keeps_nothing_and_recovers(
    client_as: ClientAs,
    federation: Federation,
    started: dict[str, Task],
    monkeypatch: pytest.MonkeyPatch,
    error: int,
    status: int,
    words: str,
) -> None:
    import os

    task = started["site-1"]
    body = update_for(task, zero_delta(_base(federation, task)))
    before = _snapshot(federation)
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        raise OSError(error, os.strerror(error))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    refused = _put(client_as("site-1"), task, body)
    assert refused.status_code == status, refused.text
    assert words in refused.json()["detail"]
    assert refused.headers["retry-after"] == "30"
    assert _snapshot(federation) == before  # no row, no blob, no temporary file
    monkeypatch.setattr(os, "fsync", real_fsync)  # space is back: the same upload now works
    assert _put(client_as("site-1"), task, body).status_code == 201


def test_blobs_without_a_row_are_collected_at_start_up(
    client_as: ClientAs, federation: Federation, started: dict[str, Task]
) -> None:
    task = started["site-1"]
    assert (
        _put(
            client_as("site-1"), task, update_for(task, zero_delta(_base(federation, task)))
        ).status_code
        == 201
    )
    kept = _snapshot(federation)
    orphan = federation.blobs.put_bytes(b"an upload whose row never committed")
    assert federation.blobs.exists(orphan)
    federation.recover()
    assert not federation.blobs.exists(orphan)
    assert _snapshot(federation) == kept


@pytest.mark.parametrize("claimed", [10**12, 2**63 - 1, 5])
def test_a_weight_above_what_the_plan_allows_is_refused_and_changes_nothing(
    client_as: ClientAs, federation: Federation, started: dict[str, Task], claimed: int
) -> None:
    task = started["site-1"]
    before = _snapshot(federation)
    delta = zero_delta(_base(federation, task))
    if claimed > 10**9:  # past what any body may carry: the manifest itself is refused
        from shared.tensors import update_bytes

        manifest = {"run_id": task.run_id, "round": task.round, "task_nonce": task.task_nonce,
                    "base_model": task.base_model, "num_samples": claimed}  # fmt: skip
        body = update_bytes(delta, UpdateManifest.model_construct(**manifest))
    else:
        body = update_for(task, delta, num_samples=claimed)
    refused = _put(client_as("site-1"), task, body)
    assert refused.status_code in (400, 422), refused.text
    if claimed == 5:
        assert refused.status_code == 422
        assert refused.json()["detail"] == (
            "update refused: num_samples 5 is outside [1, 4]: at most the 4 cases the plan's "
            "steps can touch; nothing was stored"
        )
    else:
        assert "num_samples" in refused.json()["detail"]
    assert _snapshot(federation) == before


@pytest.mark.parametrize(
    ("field", "value"), [("run_id", "1"), ("round", True), ("run_id", 1.0), ("round", 2**40)]
)
def test_json_numbers_are_not_coerced(
    client_as: ClientAs, federation: Federation, started: dict[str, Task], field: str, value: object
) -> None:
    task = started["site-2"]
    body = {"run_id": task.run_id, "round": task.round, "task_nonce": task.task_nonce,
            "base_model": task.base_model, "reason": "budget", field: value}  # fmt: skip
    before = _snapshot(federation)
    refused = client_as("site-2").post("/api/v1/runs/1/rounds/1/decline", json=body)
    assert refused.status_code == 422, refused.text
    assert field in str(refused.json()["detail"])
    assert _snapshot(federation) == before


def test_a_sparse_update_under_a_dense_policy_is_refused(
    client_as: ClientAs, federation: Federation, started: dict[str, Task]
) -> None:
    from shared.privacy.types import SparseTensor
    from shared.tensors import update_bytes

    task = started["site-1"]  # the run's policy is none: nodes send dense tensors
    delta = zero_delta(_base(federation, task))
    name = next(iter(delta))
    sparse = {name: SparseTensor(torch.tensor([0]), torch.tensor([1.0]), tuple(delta[name].shape))}
    dense = {k: v for k, v in delta.items() if k != name}
    manifest = UpdateManifest(
        run_id=task.run_id, round=task.round, task_nonce=task.task_nonce,
        base_model=task.base_model, num_samples=1, sparse=(name,),
    )  # fmt: skip
    before = _snapshot(federation)
    refused = _put(client_as("site-1"), task, update_bytes(dense, manifest, sparse))
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"] == (
        "update refused: the run's none policy sends dense tensors only, but 1 arrived "
        "sparse; nothing was stored"
    )
    assert _snapshot(federation) == before
