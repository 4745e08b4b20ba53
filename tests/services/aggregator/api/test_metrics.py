"""/metrics: what a real Prometheus scrapes, checked by its own promtool."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from services.aggregator.federation import Federation
from shared.schemas import PROTOCOL_VERSION, PrivacyTotal, Task, TaskPoll
from tests.services.aggregator.support import FakeClock, tiny_run, update_for, zero_delta

ClientAs = Callable[..., TestClient]
OCTET = {"content-type": "application/octet-stream"}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _task(client: TestClient) -> Task:
    poll = TaskPoll.model_validate(client.get("/api/v1/tasks/next").json())
    assert poll.task is not None
    return poll.task


def _two_rounds(client_as: ClientAs, federation: Federation, clock: FakeClock) -> None:
    admin = client_as("admin")
    assert admin.post("/api/v1/runs", json=tiny_run().model_dump(mode="json")).status_code == 201
    for number in (1, 2):
        for name in ("site-1", "site-2"):
            node = client_as(name)
            task = _task(node)
            assert task.round == number
            spent = PrivacyTotal(epsilon=2.5 * number, delta=1e-5, releases=number,
                                 accounting="test")  # fmt: skip
            body = update_for(task, zero_delta(federation.blobs.open_path(task.base_model)),
                              privacy_total=spent)  # fmt: skip
            url = f"/api/v1/runs/1/rounds/{number}/update"
            if number == 1 and name == "site-1":  # one refusal: a stale base model
                stale = update_for(task, zero_delta(federation.blobs.open_path(task.base_model)),
                                   base_model="0" * 64)  # fmt: skip
                assert node.put(url, content=stale, headers=OCTET).status_code == 409
            assert node.put(url, content=body, headers=OCTET).status_code == 201
            node.get(f"/api/v1/models/{task.base_model}")
        clock.advance(30)
        federation.advance()


def test_metrics_after_two_rounds(
    client_as: ClientAs, federation: Federation, clock: FakeClock
) -> None:
    _two_rounds(client_as, federation, clock)
    announcement = {"protocol": PROTOCOL_VERSION, "software_version": "t", "device": "cpu"}
    client_as("site-3").post("/api/v1/nodes/announce", json=announcement)
    failure = {"kind": "training", "error_type": "RuntimeError"}
    client_as("site-3").post("/api/v1/nodes/failure", json=failure)
    answer = client_as("admin").get("/api/v1/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    got = _samples(answer.text)
    run = (("run", "1"),)
    assert got[("fedseg_updates_accepted_total", run)] == 4
    assert got[("fedseg_rounds", (("run", "1"), ("state", "closed")))] == 2
    assert got[("fedseg_rounds", (("run", "1"), ("state", "open")))] == 1
    assert got[("fedseg_run_current_round", run)] == 3
    assert got[("fedseg_run_info", (("name", "test"), ("run", "1"), ("state", "running")))] == 1
    assert got[("fedseg_round_duration_seconds_count", run)] == 2
    assert got[("fedseg_round_duration_seconds_sum", run)] == 60
    assert got[("fedseg_round_duration_seconds_bucket", (("le", "30.0"), ("run", "1")))] == 2
    assert got[("fedseg_updates_rejected_total", (("code", "stale_model"),))] == 1
    upload = (
        ("method", "PUT"), ("route", "/api/v1/runs/{run_id}/rounds/{number}/update"),
    )  # fmt: skip
    assert got[("fedseg_http_request_duration_seconds_count", upload)] == 5
    assert got[("fedseg_http_requests_total", (*upload[:1], *upload[1:], ("status", "201")))] == 4
    download = (("route", "/api/v1/models/{sha256}"),)
    assert got[("fedseg_http_sent_bytes_total", download)] > 4 * 1000
    upload_route = (("route", upload[1][1]),)
    assert got[("fedseg_http_received_bytes_total", upload_route)] > 5 * 1000
    assert got[("fedseg_nodes", (("state", "failed"),))] == 1
    assert got[("fedseg_nodes", (("state", "ok"),))] == 2
    assert got[("fedseg_node_state", (("node", "site-3"), ("state", "failed")))] == 1
    assert got[("fedseg_node_rounds_joined", (("node", "site-1"),))] == 2
    assert got[("fedseg_node_privacy_epsilon", (("node", "site-2"),))] == 5.0
    seen = got[("fedseg_node_last_seen_timestamp_seconds", (("node", "site-2"),))]
    assert seen == pytest.approx(clock.now.timestamp() - 60, abs=31)


def test_promtool_accepts_the_metrics(
    client_as: ClientAs, federation: Federation, clock: FakeClock
) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip(
            "PROMTOOL MISSING: install Debian's prometheus package (apt-get install prometheus) "
            "to check /metrics with the tool Prometheus users run"
        )
    _two_rounds(client_as, federation, clock)
    text = client_as("admin").get("/api/v1/metrics").text
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout + checked.stderr == ""


DEPLOY = Path(__file__).resolve().parents[4] / "deploy" / "prometheus"


def test_the_grafana_board_plots_only_series_the_aggregator_serves(
    client_as: ClientAs, federation: Federation, clock: FakeClock
) -> None:
    _two_rounds(client_as, federation, clock)
    served = {name for name, _ in _samples(client_as("admin").get("/api/v1/metrics").text)}
    board = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\bfedseg_[a-z_]+", expr)}
    assert len(used) >= 10
    assert used <= served, sorted(used - served)


def test_promtool_accepts_the_scrape_config(pki_dir: Path, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("PROMTOOL MISSING: apt-get install prometheus")
    config = (DEPLOY / "prometheus.yml").read_text()
    config = config.replace("/etc/prometheus/fedseg/ca.pem", str(pki_dir / "ca.pem"))
    config = config.replace("/etc/prometheus/fedseg/prometheus.pem", str(pki_dir / "site-1.pem"))
    config = config.replace(
        "/etc/prometheus/fedseg/prometheus-key.pem", str(pki_dir / "site-1-key.pem")
    )
    (tmp_path / "prometheus.yml").write_text(config)
    checked = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_requests_cannot_mint_series(client_as: ClientAs) -> None:
    node = client_as("site-1")
    for junk in ("abc", "1" * 40, "x%20y", "999"):
        node.put(f"/api/v1/runs/{junk}/rounds/1/update", content=b"x", headers=OCTET)
        node.get(f"/api/v1/{junk}/update")
    text = client_as("admin").get("/api/v1/metrics").text
    rejected = [line for line in text.splitlines() if line.startswith("fedseg_updates_rejected")]
    routes = {
        s.labels.get("route") for f in text_string_to_metric_families(text) for s in f.samples
    }
    assert len(rejected) <= 2, rejected  # by code only: validation_error, maybe not_found
    assert not any(junk in str(routes) for junk in ("abc", "1" * 40, "999"))
