"""Node announcements: what the aggregator records, and a node on another wire protocol."""

from __future__ import annotations

from collections.abc import Callable

from starlette.testclient import TestClient

from shared.schemas import PROTOCOL_HEADER, PROTOCOL_VERSION, Announcement, NodeView

ClientAs = Callable[..., TestClient]


def _announcement(protocol: int) -> dict[str, object]:
    return Announcement(
        protocol=protocol,
        software_version="fedseg 0.1.0 torch 2.13.0",
        device="cpu",
        num_train_cases=5,
        num_val_cases=1,
    ).model_dump()


def test_announce_records_the_node(client_as: ClientAs) -> None:
    answer = client_as("site-1").post(
        "/api/v1/nodes/announce", json=_announcement(PROTOCOL_VERSION)
    )
    assert answer.status_code == 200
    node = NodeView.model_validate(answer.json())
    assert (node.name, node.software_version, node.num_train_cases) == (
        "site-1",
        "fedseg 0.1.0 torch 2.13.0",
        5,
    )


def test_another_wire_protocol_is_refused_by_name_and_not_recorded(client_as: ClientAs) -> None:
    other = PROTOCOL_VERSION + 1
    answer = client_as("site-2").post("/api/v1/nodes/announce", json=_announcement(other))
    assert answer.status_code == 409
    assert answer.json() == {
        "detail": f"node site-2 speaks wire protocol {other}, this aggregator "
        f"{PROTOCOL_VERSION}: run the same fedseg release on the aggregator and every node",
        "code": "protocol_mismatch",
    }
    listed = client_as("admin").get("/api/v1/nodes").json()
    assert [n["name"] for n in listed if n["name"] == "site-2"] == []


def test_an_announcement_without_a_protocol_is_refused(client_as: ClientAs) -> None:
    body = _announcement(PROTOCOL_VERSION)
    del body["protocol"]
    answer = client_as("site-1").post("/api/v1/nodes/announce", json=body)
    assert answer.status_code == 422
    assert "protocol" in str(answer.json()["detail"])


def test_a_node_request_with_another_protocol_header_is_refused_before_any_work(
    client_as: ClientAs,
) -> None:
    node = client_as("site-1")
    other = str(PROTOCOL_VERSION + 1)
    refused = node.get("/api/v1/tasks/next", params={"wait": 0}, headers={PROTOCOL_HEADER: other})
    assert refused.status_code == 409
    assert refused.json()["detail"].startswith(f"node site-1 speaks wire protocol {other}, ")
    garbled = node.get("/api/v1/tasks/next", params={"wait": 0}, headers={PROTOCOL_HEADER: "x"})
    assert garbled.status_code == 400
    assert garbled.json() == {
        "detail": "x-fedseg-protocol must be an integer, got 'x'",
        "code": "invalid_request",
    }
    same = {PROTOCOL_HEADER: str(PROTOCOL_VERSION)}
    assert node.get("/api/v1/tasks/next", params={"wait": 0}, headers=same).status_code == 200
    # Status queries (an operator's curl, the admin CLI) need no header.
    assert client_as("admin").get("/api/v1/rounds").status_code == 200
