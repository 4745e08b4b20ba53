"""Who may call what: admin-only controls, status for everyone, revocation without restart."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from starlette.testclient import TestClient

from services.aggregator.api.main import create_app
from services.aggregator.core.config import AggregatorSettings
from services.aggregator.federation import Federation
from shared.pki import load_certificate
from shared.schemas import RoundView, RunView, TaskPoll
from tests.odd_certificates import odd_certificate
from tests.services.aggregator.support import tiny_run

ClientAs = Callable[..., TestClient]


def test_admin_creates_run_and_node_cannot(client_as: ClientAs) -> None:
    body = tiny_run().model_dump(mode="json")
    refused = client_as("site-1").post("/api/v1/runs", json=body)
    assert refused.status_code == 403
    assert refused.json() == {
        "detail": "this endpoint needs an admin certificate; site-1 has role node",
        "code": "permission_denied",
    }
    created = client_as("admin").post("/api/v1/runs", json=body)
    assert created.status_code == 201
    run = RunView.model_validate(created.json())
    assert (run.id, run.state, run.current_round, run.expected_nodes) == (
        1,
        "running",
        1,
        ["site-1", "site-2"],
    )


def test_node_cannot_pause_abort_or_revoke(client_as: ClientAs) -> None:
    client_as("admin").post("/api/v1/runs", json=tiny_run().model_dump(mode="json"))
    node = client_as("site-1")
    for path in ("/api/v1/runs/1/pause", "/api/v1/runs/1/resume", "/api/v1/runs/1/abort"):
        assert node.post(path).status_code == 403
    revoke = node.post("/api/v1/revocations", json={"serial": "ab", "name": "site-2"})
    assert revoke.status_code == 403


def test_admin_pauses_and_resumes(client_as: ClientAs) -> None:
    admin = client_as("admin")
    admin.post("/api/v1/runs", json=tiny_run().model_dump(mode="json"))
    assert admin.post("/api/v1/runs/1/pause").json()["state"] == "paused"
    again = admin.post("/api/v1/runs/1/pause")
    assert again.status_code == 409
    assert again.json()["detail"] == "run 1 is paused; it cannot become paused"
    assert admin.post("/api/v1/runs/1/resume").json()["state"] == "running"


def test_status_is_readable_by_nodes_and_admins(client_as: ClientAs) -> None:
    client_as("admin").post("/api/v1/runs", json=tiny_run().model_dump(mode="json"))
    for name in ("site-1", "admin"):
        rounds = client_as(name).get("/api/v1/rounds")
        assert rounds.status_code == 200
        (only,) = [RoundView.model_validate(r) for r in rounds.json()]
        assert (only.round, only.state, only.reported_nodes) == (1, "open", [])
    assert client_as("site-3").get("/api/v1/runs/1").json()["id"] == 1
    missing = client_as("admin").get("/api/v1/runs/9")
    assert (missing.status_code, missing.json()) == (
        404,
        {"detail": "no run 9", "code": "not_found"},
    )


def test_admin_cannot_poll_for_tasks(client_as: ClientAs) -> None:
    response = client_as("admin").get("/api/v1/tasks/next")
    assert response.status_code == 403


def test_request_without_certificate_is_unauthorised(
    settings: AggregatorSettings, federation: Federation
) -> None:
    app = create_app(settings, federation)
    response = TestClient(app, base_url="https://t").get("/api/v1/rounds")
    assert response.status_code == 401
    assert response.json() == {
        "detail": "a client certificate is required",
        "code": "certificate_required",
    }


def test_revoked_certificate_refused_on_next_request(client_as: ClientAs, pki_dir: Path) -> None:
    admin = client_as("admin")
    admin.post("/api/v1/runs", json=tiny_run().model_dump(mode="json"))
    node = client_as("site-2")
    assert TaskPoll.model_validate(node.get("/api/v1/tasks/next").json()).task is not None
    serial = load_certificate(pki_dir / "site-2.pem").serial_number
    revoked = admin.post(
        "/api/v1/revocations", json={"serial": f"{serial:x}", "name": "site-2", "reason": "left"}
    )
    assert revoked.status_code == 204
    refused = node.get("/api/v1/tasks/next")
    assert refused.status_code == 403
    assert refused.json() == {
        "detail": f"certificate {serial:x} of site-2 has been revoked; "
        "ask the federation's operator for a new certificate",
        "code": "certificate_revoked",
    }
    assert client_as("site-1").get("/api/v1/tasks/next").status_code == 200


def test_model_download_with_etag(client_as: ClientAs, federation: Federation) -> None:
    client_as("admin").post("/api/v1/runs", json=tiny_run().model_dump(mode="json"))
    node = client_as("site-1")
    task = TaskPoll.model_validate(node.get("/api/v1/tasks/next").json()).task
    assert task is not None
    response = node.get(f"/api/v1/models/{task.base_model}")
    assert response.status_code == 200
    assert response.headers["etag"] == f'"{task.base_model}"'
    assert response.content == federation.blobs.open_path(task.base_model).read_bytes()
    cached = node.get(
        f"/api/v1/models/{task.base_model}", headers={"if-none-match": f'"{task.base_model}"'}
    )
    assert (cached.status_code, cached.content) == (304, b"")
    unknown = node.get(f"/api/v1/models/{'a' * 64}")
    assert (unknown.status_code, unknown.json()) == (
        404,
        {"detail": f"no model version {'a' * 64}", "code": "not_found"},
    )


@pytest.mark.parametrize(
    ("cn", "ou", "usage", "words"),
    [
        ("admin2", "admin", [], "does not allow TLS client authentication"),
        ("admin2", "admin", [ExtendedKeyUsageOID.SERVER_AUTH], "no clientAuth"),
        ("agg2", "server", [ExtendedKeyUsageOID.CLIENT_AUTH], "cannot act as a client"),
        ("../../etc", "node", [ExtendedKeyUsageOID.CLIENT_AUTH], "is not a valid fedseg name"),
        ("n" * 64, "node", [ExtendedKeyUsageOID.CLIENT_AUTH], "is not a valid fedseg name"),
    ],
)
def test_only_certificates_as_fedseg_pki_issues_them_may_call(
    client_as: ClientAs,
    federation: Federation,
    pki_dir: Path,
    tmp_path: Path,
    cn: str,
    ou: str,
    usage: list[x509.ObjectIdentifier],
    words: str,
) -> None:
    cert = odd_certificate(pki_dir, tmp_path, cn, ou, usage)
    client = client_as(cn, cert)
    for method, path in (("get", "/api/v1/runs"), ("post", "/api/v1/nodes/announce")):
        answer = client.request(method, path, json={})
        assert answer.status_code == 403, (path, answer.text)
        assert words in answer.json()["detail"]
    assert client.post("/api/v1/runs", json=tiny_run().model_dump(mode="json")).status_code == 403
    assert federation.list_nodes() == []
    assert federation.list_runs() == []


@pytest.mark.parametrize(
    "path",
    ["/api/v1/runs/0", f"/api/v1/runs/{2**63}", f"/api/v1/runs/1/rounds/{2**31}",
     f"/api/v1/rounds?run_id={2**40}"],
)  # fmt: skip
def test_ids_beyond_what_the_database_stores_are_a_422(client_as: ClientAs, path: str) -> None:
    answer = client_as("admin").get(path)
    assert answer.status_code == 422, answer.text


def test_json_bodies_are_capped_while_streaming_and_refusals_close_the_connection(
    client_as: ClientAs, federation: Federation
) -> None:
    admin = client_as("admin")
    big = b'{"rounds": 1, "expected_nodes": ["site-1"], "name": "' + b"x" * (2 << 20) + b'"}'
    declared = admin.post("/api/v1/runs", content=big, headers={"content-type": "application/json"})
    assert declared.status_code == 413
    assert declared.json()["detail"] == (
        "request body exceeds the limit of 1048576 bytes for this endpoint; nothing was read"
    )
    assert declared.headers["connection"] == "close"

    def chunks() -> object:
        for start in range(0, len(big), 64 << 10):
            yield big[start : start + (64 << 10)]

    streamed = admin.post(
        "/api/v1/runs", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert (declared.json()["code"], streamed.json()["code"]) == ("payload_too_large",) * 2
    assert federation.list_runs() == []


def test_a_422_quotes_only_an_excerpt_of_the_input(client_as: ClientAs) -> None:
    body = {"rounds": 1, "expected_nodes": ["site-1"], "name": "y" * 500_000}
    answer = client_as("admin").post("/api/v1/runs", json=body)
    assert answer.status_code == 422
    assert len(answer.content) < 2000
    (error,) = answer.json()["detail"]
    assert answer.json()["code"] == "validation_error"
    assert error["loc"] == ["body", "name"]
    assert error["input"].endswith("… (500002 characters)")


def test_the_framework_s_own_refusals_carry_a_code(client_as: ClientAs) -> None:
    admin = client_as("admin")
    missing = admin.get("/api/v1/no-such-endpoint")
    assert (missing.status_code, missing.json()["code"]) == (404, "no_such_path")
    wrong = admin.delete("/api/v1/runs")
    assert (wrong.status_code, wrong.json()["code"]) == (405, "method_not_allowed")


@pytest.mark.parametrize(
    "headers",
    [{"origin": "https://evil.example"}, {"sec-fetch-site": "cross-site"},
     {"sec-fetch-site": "same-origin"}],
)  # fmt: skip
def test_a_browser_cannot_change_state_even_with_an_admin_certificate(
    client_as: ClientAs, federation: Federation, headers: dict[str, str]
) -> None:
    admin = client_as("admin")
    body = tiny_run().model_dump(mode="json")
    refused = admin.post("/api/v1/runs", json=body, headers=headers)
    assert (refused.status_code, refused.json()["code"]) == (403, "browser_write_refused")
    assert federation.list_runs() == []
    assert admin.get("/api/v1/runs", headers=headers).status_code == 200  # reading is fine
    assert (
        admin.post("/api/v1/runs", json=body, headers={"sec-fetch-site": "none"}).status_code == 201
    )


def test_no_page_loads_scripts_from_a_cdn(client_as: ClientAs) -> None:
    admin = client_as("admin")
    assert admin.get("/docs").status_code == 404
    assert admin.get("/redoc").status_code == 404
    assert admin.get("/openapi.json").json()["info"]["title"] == "fedseg aggregator"


def test_a_node_may_hold_only_a_few_long_polls_open(client_as: ClientAs) -> None:
    import threading
    import time

    from services.aggregator.api.routes.tasks import MAX_POLLS

    node = client_as("site-3")  # in no run: each poll waits its full time
    answers: list[int] = []
    pollers = [
        threading.Thread(target=lambda: answers.append(
            node.get("/api/v1/tasks/next", params={"wait": 3}).status_code))
        for _ in range(MAX_POLLS)
    ]  # fmt: skip
    for poller in pollers:
        poller.start()
    time.sleep(1.0)
    refused = node.get("/api/v1/tasks/next", params={"wait": 3})
    assert (refused.status_code, refused.json()["code"]) == (429, "too_many_requests")
    assert refused.headers["retry-after"] == "1"
    assert client_as("site-2").get("/api/v1/tasks/next").status_code == 200  # others unaffected
    for poller in pollers:
        poller.join()
    assert answers == [200] * MAX_POLLS
    assert node.get("/api/v1/tasks/next").status_code == 200  # slots are given back
