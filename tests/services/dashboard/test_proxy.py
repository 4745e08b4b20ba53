"""The loopback proxy: which requests reach the aggregator, and what comes back."""

from __future__ import annotations

import re
import socket

import httpx
import pytest

from services.dashboard.assets import ASSET_NAMES, SECURITY_HEADERS
from services.dashboard.proxy import DashboardProxy, forwardable, is_loopback
from shared.errors import ConfigurationError
from tests.services.dashboard.conftest import UPSTREAM_URL, RunningProxy

READS = [
    "/api/v1/health",
    "/api/v1/metrics",
    "/api/v1/runs",
    "/api/v1/runs/3",
    "/api/v1/runs/3/rounds",
    "/api/v1/runs/3/rounds/12",
    "/api/v1/rounds",
    "/api/v1/rounds?run_id=2",
    "/api/v1/nodes",
]
NOT_FORWARDED = [
    "/api/v1/models/" + "a" * 64,  # weights are not for the browser
    "/api/v1/tasks/next",
    "/api/v1/runs/1/pause",
    "/api/v1/revocations",
    "/api/v1/nodes/announce",
    "/api/v1/runs/1/rounds/1/update",
    "/api/v1/runs/01",
    "/api/v1/runs/1/../../models",
    "/api/v1/runs/%31",
    "/api/v1/nodes?verbose=1",
    "/api/v1/rounds?run_id=1&x=2",
    "/api/v2/runs",
    "/docs",
]


@pytest.mark.parametrize("path", READS)
def test_proxy_forwards_each_read_endpoint_unchanged(proxy: RunningProxy, path: str) -> None:
    answer = proxy.get(path)
    assert (answer.status_code, answer.json()) == (200, {"path": path})
    assert proxy.upstream.seen == [path]
    assert answer.headers["content-type"] == "application/json"
    for name, value in SECURITY_HEADERS.items():
        assert answer.headers[name] == value


@pytest.mark.parametrize("path", NOT_FORWARDED)
def test_proxy_answers_404_outside_the_allowlist_and_forwards_nothing(
    proxy: RunningProxy, path: str
) -> None:
    answer = proxy.get(path)
    assert answer.status_code == 404
    assert answer.json()["detail"].endswith("is not a read endpoint this proxy serves")
    assert proxy.upstream.seen == []


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_proxy_refuses_every_method_but_get(proxy: RunningProxy, method: str) -> None:
    answer = httpx.request(method, f"{proxy.base}/api/v1/runs", json={"rounds": 1})
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET"
    assert answer.json() == {"detail": f"the dashboard is read-only: {method} is not forwarded"}
    assert proxy.upstream.seen == []


def test_proxy_passes_an_aggregator_error_through_with_its_status(proxy: RunningProxy) -> None:
    body = {"detail": "certificate 1f of admin has been revoked", "code": "certificate_revoked"}
    proxy.upstream.answers["/api/v1/runs"] = httpx.Response(403, json=body)
    proxy.upstream.answers["/api/v1/nodes"] = httpx.Response(
        503, json={"detail": "disk", "code": "storage_error"}, headers={"Retry-After": "30"}
    )
    refused = proxy.get("/api/v1/runs")
    assert (refused.status_code, refused.json()) == (403, body)
    busy = proxy.get("/api/v1/nodes")
    assert (busy.status_code, busy.headers["retry-after"]) == (503, "30")
    assert busy.json() == {"detail": "disk", "code": "storage_error"}


def test_proxy_forwards_the_aggregators_date(proxy: RunningProxy) -> None:
    date = "Tue, 01 Dec 2026 10:00:00 GMT"
    proxy.upstream.answers["/api/v1/runs"] = httpx.Response(200, json=[], headers={"Date": date})
    assert proxy.get("/api/v1/runs").headers["date"] == date


def test_proxy_answers_502_when_the_aggregator_cannot_be_reached(proxy: RunningProxy) -> None:
    proxy.upstream.fail_with = httpx.ConnectError("connection refused")
    answer = proxy.get("/api/v1/runs")
    assert answer.status_code == 502
    assert answer.json() == {
        "detail": f"cannot reach the aggregator at {UPSTREAM_URL}: connection refused"
    }


@pytest.mark.parametrize("name", sorted(ASSET_NAMES))
def test_proxy_serves_the_packaged_files(proxy: RunningProxy, name: str) -> None:
    answer = proxy.get(f"/dashboard/{name}")
    assert answer.status_code == 200
    assert answer.headers["content-security-policy"].startswith("default-src 'self'")
    assert answer.content.strip()
    urls = set(re.findall(r"https?://[^\s\"'`)]+", answer.text))
    assert urls <= {"http://www.w3.org/2000/svg"}  # an XML namespace, not a fetch: no CDN
    assert proxy.upstream.seen == []


def test_proxy_redirects_to_the_page_and_has_no_other_files(proxy: RunningProxy) -> None:
    for path in ("/", "/dashboard"):
        answer = proxy.get(path)
        assert (answer.status_code, answer.headers["location"]) == (302, "/dashboard/")
    page = proxy.get("/dashboard/")
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script src="dashboard.js" defer></script>' in page.text
    for path in ("/dashboard/../pyproject.toml", "/dashboard/proxy.py", "/dashboard/static"):
        assert proxy.get(path).status_code == 404


def test_proxy_refuses_a_request_for_another_host_name(proxy: RunningProxy) -> None:
    # DNS rebinding: another site's name resolving to 127.0.0.1 arrives with its own Host.
    answer = proxy.get("/api/v1/runs", headers={"Host": f"evil.example:{proxy.server.port}"})
    assert answer.status_code == 421
    assert answer.json() == {
        "detail": f"Host 'evil.example:{proxy.server.port}' is not this dashboard"
    }
    assert proxy.upstream.seen == []
    named = proxy.get("/api/v1/runs", headers={"Host": f"localhost:{proxy.server.port}"})
    assert named.status_code == 200


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.3.4.5", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("192.168.1.10", False), ("::", False), ("example.org", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_proxy_refuses_a_non_loopback_address_unless_allowed() -> None:
    upstream = httpx.Client(base_url=UPSTREAM_URL)
    with pytest.raises(ConfigurationError) as refused:
        DashboardProxy("0.0.0.0", 0, upstream, allow_remote=False)
    assert str(refused.value) == (
        "--host 0.0.0.0 is not a loopback address: anyone who reaches it reads the "
        "federation's status with your certificate; use 127.0.0.1, or --allow-remote"
    )
    server = DashboardProxy("0.0.0.0", 0, upstream, allow_remote=True)
    server.server_close()


def test_proxy_on_a_busy_port_is_one_clear_error() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(ConfigurationError) as busy:
            DashboardProxy("127.0.0.1", port, httpx.Client(), allow_remote=False)
    assert str(busy.value) == (
        f"cannot listen on 127.0.0.1:{port}: the port is already in use; "
        "stop what holds it or choose another --port"
    )


def test_forwardable_takes_only_a_run_id_query_on_rounds() -> None:
    assert forwardable("/api/v1/rounds", "run_id=7")
    assert not forwardable("/api/v1/rounds", "run_id=0")
    assert not forwardable("/api/v1/runs", "run_id=7")
