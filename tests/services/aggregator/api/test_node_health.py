"""Node health over the API: failures, declines, lateness, offline, revocation, removal."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from services.aggregator.federation import Federation
from shared.pki import load_certificate
from shared.schemas import (
    PROTOCOL_VERSION,
    NodeState,
    NodeView,
    RoundState,
    RoundView,
    RunView,
    Task,
    TaskPoll,
)
from tests.services.aggregator.support import FakeClock, tiny_run, update_for, zero_delta

ClientAs = Callable[..., TestClient]
OCTET = {"content-type": "application/octet-stream"}
THREE = ["site-1", "site-2", "site-3"]


def _start(client_as: ClientAs, **overrides: object) -> dict[str, Task]:
    fields: dict[str, object] = {"expected_nodes": THREE, "min_nodes": 2, **overrides}
    body = tiny_run(**fields).model_dump(mode="json")
    assert client_as("admin").post("/api/v1/runs", json=body).status_code == 201
    tasks = {}
    for name in THREE:
        poll = TaskPoll.model_validate(client_as(name).get("/api/v1/tasks/next").json())
        assert poll.task is not None
        tasks[name] = poll.task
    return tasks


def _nodes(client_as: ClientAs) -> dict[str, NodeView]:
    answer = client_as("admin").get("/api/v1/nodes")
    assert answer.status_code == 200
    return {n.name: n for n in (NodeView.model_validate(v) for v in answer.json())}


def _upload(client_as: ClientAs, federation: Federation, task: Task, name: str) -> int:
    base = federation.blobs.open_path(task.base_model)
    answer = client_as(name).put(
        f"/api/v1/runs/{task.run_id}/rounds/{task.round}/update",
        content=update_for(task, zero_delta(base)),
        headers=OCTET,
    )
    return answer.status_code


def _round(client_as: ClientAs, number: int = 1) -> RoundView:
    return RoundView.model_validate(
        client_as("admin").get(f"/api/v1/runs/1/rounds/{number}").json()
    )


def test_a_reported_failure_shows_until_the_node_starts_again(client_as: ClientAs) -> None:
    _start(client_as)
    site = client_as("site-2")
    failure = {"kind": "data", "error_type": "DataError", "will_retry": False}
    assert site.post("/api/v1/nodes/failure", json=failure).status_code == 204
    node = _nodes(client_as)["site-2"]
    assert node.state == NodeState.FAILED
    assert node.state_detail == (
        "data failure (DataError), stopped; the details are in the hospital's node log"
    )
    assert node.last_error == node.state_detail
    announcement = {"protocol": PROTOCOL_VERSION, "software_version": "t", "device": "cpu"}
    assert site.post("/api/v1/nodes/announce", json=announcement).status_code == 200
    node = _nodes(client_as)["site-2"]
    assert (node.state, node.state_detail) == (NodeState.OK, "training round 1")
    assert node.last_error is not None
    assert node.last_error_at is not None


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "data", "error_type": "DataError", "message": "case BraTS_001 is broken"},
        {"kind": "data", "error_type": "no spaces allowed"},
        {"kind": "gremlins", "error_type": "X"},
    ],
)
def test_a_failure_report_carries_no_free_text(client_as: ClientAs, body: dict[str, str]) -> None:
    answer = client_as("site-1").post("/api/v1/nodes/failure", json=body)
    assert (answer.status_code, answer.json()["code"]) == (422, "validation_error")
    assert "site-1" not in _nodes(client_as)


def test_a_decline_shows_the_node_failed_until_it_contributes(client_as: ClientAs) -> None:
    tasks = _start(client_as)
    task = tasks["site-3"]
    decline = {
        "run_id": task.run_id, "round": task.round, "task_nonce": task.task_nonce,
        "base_model": task.base_model, "reason": "privacy budget of 8 would be exceeded",
    }  # fmt: skip
    answer = client_as("site-3").post("/api/v1/runs/1/rounds/1/decline", json=decline)
    assert answer.status_code == 201, answer.text
    node = _nodes(client_as)["site-3"]
    assert (node.state, node.state_detail) == (
        NodeState.FAILED,
        "declined round 1: privacy budget of 8 would be exceeded",
    )


def test_late_after_the_deadline_and_offline_when_unseen(
    client_as: ClientAs, federation: Federation, clock: FakeClock
) -> None:
    tasks = _start(client_as, min_nodes=3)
    assert _upload(client_as, federation, tasks["site-1"], "site-1") == 201
    clock.advance(61)  # past the 60 s deadline; min_nodes 3 keeps the round open (reopens)
    client_as("site-2").get("/api/v1/tasks/next")
    nodes = _nodes(client_as)
    assert (nodes["site-1"].state, nodes["site-1"].state_detail) == (
        NodeState.OK,
        "reported round 1",
    )
    assert nodes["site-2"].state == NodeState.LATE
    assert nodes["site-2"].state_detail == "round 1's deadline passed 1 s ago"
    clock.advance(60)  # 121 s since site-3 was last seen
    nodes = _nodes(client_as)
    assert (nodes["site-3"].state, nodes["site-3"].state_detail) == (
        NodeState.OFFLINE,
        "not seen for 2 min",
    )
    assert client_as("site-3").post("/api/v1/nodes/heartbeat").status_code == 204
    assert _nodes(client_as)["site-3"].state == NodeState.LATE


def test_revoking_a_node_closes_the_open_round_when_the_others_report(
    client_as: ClientAs, federation: Federation, pki_dir: Path
) -> None:
    tasks = _start(client_as)
    assert _upload(client_as, federation, tasks["site-1"], "site-1") == 201
    serial = load_certificate(pki_dir / "site-3.pem").serial_number
    revocation = {"serial": format(serial, "x"), "name": "site-3", "reason": "laptop stolen"}
    assert client_as("admin").post("/api/v1/revocations", json=revocation).status_code == 204
    run = RunView.model_validate(client_as("admin").get("/api/v1/runs/1").json())
    assert run.expected_nodes == ["site-1", "site-2"]
    assert run.detail == "node site-3 removed (certificate revoked)"
    assert _upload(client_as, federation, tasks["site-2"], "site-2") == 201
    federation.advance()  # the ticker's next step: no deadline needed
    closed = _round(client_as)
    assert closed.state == RoundState.CLOSED
    assert closed.reported_nodes == ["site-1", "site-2"]
    node = _nodes(client_as)["site-3"]
    assert (node.state, node.state_detail) == (
        NodeState.REVOKED,
        f"certificate {serial:x} revoked: laptop stolen",
    )


def test_remove_node_takes_it_out_and_what_it_sent_no_longer_counts(
    client_as: ClientAs, federation: Federation
) -> None:
    tasks = _start(client_as)
    admin = client_as("admin")
    assert _upload(client_as, federation, tasks["site-3"], "site-3") == 201
    removed = admin.delete("/api/v1/runs/1/nodes/site-3")
    assert removed.status_code == 200, removed.text
    assert RunView.model_validate(removed.json()).expected_nodes == ["site-1", "site-2"]
    listed = _round(client_as)
    assert listed.reported_nodes == []
    assert [(u.node, u.status, u.detail) for u in listed.updates] == [
        ("site-3", "excluded", "node removed from the run (removed by an administrator)")
    ]
    assert _upload(client_as, federation, tasks["site-1"], "site-1") == 201
    federation.advance()
    assert _round(client_as).state == RoundState.OPEN  # site-3's update does not count
    assert _upload(client_as, federation, tasks["site-2"], "site-2") == 201
    federation.advance()
    closed = _round(client_as)
    assert (closed.state, closed.reported_nodes) == (RoundState.CLOSED, ["site-1", "site-2"])
    again = client_as("site-3").get("/api/v1/tasks/next")
    assert TaskPoll.model_validate(again.json()).task is None
    late = _upload(client_as, federation, tasks["site-3"], "site-3")
    assert late == 200  # its round-1 bytes again: the same receipt, nothing new


def test_remove_node_refusals(client_as: ClientAs) -> None:
    _start(client_as)
    admin = client_as("admin")
    for path, status, code in (
        ("/api/v1/runs/1/nodes/site-9", 404, "not_found"),
        ("/api/v1/runs/7/nodes/site-1", 404, "not_found"),
        ("/api/v1/runs/1/nodes/bad%20name", 422, "validation_error"),
    ):
        answer = admin.delete(path)
        assert (answer.status_code, answer.json()["code"]) == (status, code), path
    refused = client_as("site-1").delete("/api/v1/runs/1/nodes/site-2")
    assert (refused.status_code, refused.json()["code"]) == (403, "permission_denied")
    assert admin.post("/api/v1/runs/1/abort").status_code == 200
    over = admin.delete("/api/v1/runs/1/nodes/site-1")
    assert (over.status_code, over.json()["code"]) == (409, "conflict")


def test_removing_below_min_nodes_fails_the_round_at_once(
    client_as: ClientAs, federation: Federation
) -> None:
    _start(client_as, min_nodes=3)
    assert client_as("admin").delete("/api/v1/runs/1/nodes/site-2").status_code == 200
    federation.advance()
    failed = _round(client_as)
    assert failed.state == RoundState.FAILED
    assert failed.detail == "only 2 expected nodes are left (min_nodes 3); round failed"


def test_a_removed_node_s_decline_no_longer_counts_as_an_answer(
    client_as: ClientAs, federation: Federation
) -> None:
    tasks = _start(client_as)
    task = tasks["site-3"]
    decline = {
        "run_id": 1, "round": 1, "task_nonce": task.task_nonce, "base_model": task.base_model,
        "reason": "privacy budget spent",
    }  # fmt: skip
    assert (
        client_as("site-3").post("/api/v1/runs/1/rounds/1/decline", json=decline).status_code == 201
    )
    assert client_as("admin").delete("/api/v1/runs/1/nodes/site-3").status_code == 200
    assert _upload(client_as, federation, tasks["site-1"], "site-1") == 201
    federation.advance()
    open_round = _round(client_as)
    assert (open_round.state, open_round.declined_nodes) == (
        RoundState.OPEN,
        [],
    )  # waits for site-2


def test_removal_leaves_a_round_that_began_aggregating_alone(
    client_as: ClientAs, federation: Federation
) -> None:
    from services.aggregator.state.models import Round

    tasks = _start(client_as)
    for name in ("site-1", "site-3"):
        assert _upload(client_as, federation, tasks[name], name) == 201
    with federation._sessions.begin() as session:  # the ticker's compare-and-set, done
        session.get(Round, 1).state = RoundState.AGGREGATING  # type: ignore[union-attr]
    assert client_as("admin").delete("/api/v1/runs/1/nodes/site-3").status_code == 200
    assert _round(client_as).state == RoundState.AGGREGATING
    federation.advance()
    closed = _round(client_as)
    assert (closed.state, closed.reported_nodes) == (RoundState.CLOSED, ["site-1", "site-3"])
