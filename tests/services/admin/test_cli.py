"""``fedseg-admin`` against a real aggregator process over mutual TLS."""

from __future__ import annotations

import csv
import hashlib
import re
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from services.admin.main import main
from services.demo.processes import Kit, free_port, stop
from shared import pki
from shared.identity import Role
from shared.schemas import PROTOCOL_VERSION, Announcement, RunView
from tests.e2e.conftest import AggregatorProcess, start_aggregator
from tests.odd_certificates import odd_certificate

Capture = pytest.CaptureFixture[str]


@pytest.fixture(scope="module")
def aggregator(
    pki_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AggregatorProcess]:
    agg = start_aggregator(pki_dir, tmp_path_factory.mktemp("admin-cli"))
    yield agg
    stop(agg.process)


def _connection(agg: AggregatorProcess, name: str = "admin") -> list[str]:
    kit = Kit.of(agg.pki_dir, name)
    return ["--url", agg.url, "--ca", str(kit.ca), "--cert", str(kit.cert), "--key", str(kit.key)]


def _admin(
    capsys: Capture, agg: AggregatorProcess, *args: str, name: str = "admin"
) -> tuple[int, str, str]:
    code = main([*_connection(agg, name), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _create(capsys: Capture, agg: AggregatorProcess, name: str, *extra: str) -> RunView:
    code, out, err = _admin(
        capsys, agg, "create-run", "--name", name, "--nodes", "site-1", "site-2",
        "--rounds", "2", "--init-filters", "8", "--crop", "16", *extra,
    )  # fmt: skip
    assert (code, err) == (0, ""), err
    run_id = int(re.fullmatch(rf"run (\d+) \({name}\) created: .*\n", out)[1])  # type: ignore[index]
    with Kit.of(agg.pki_dir, "admin").http(agg.url) as http:
        return RunView.model_validate(http.get(f"/api/v1/runs/{run_id}").json())


def test_health_with_flags_environment_or_env_file(
    aggregator: AggregatorProcess, capsys: Capture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    expected = (0, f"ok: fedseg 0.1.0 at {aggregator.url}\n", "")
    assert _admin(capsys, aggregator, "health") == expected
    assert _admin(capsys, aggregator, "health", name="site-1") == expected
    flags = _connection(aggregator)
    settings = dict(zip(["URL", "CA", "CERT", "KEY"], flags[1::2], strict=True))
    (tmp_path / "admin.env").write_text(
        "".join(f"FEDSEG_ADMIN_{k}={v}\n" for k, v in settings.items())
    )
    assert main(["--env-file", str(tmp_path / "admin.env"), "health"]) == 0
    for key, value in settings.items():
        monkeypatch.setenv(f"FEDSEG_ADMIN_{key}", value)
    assert main(["health"]) == 0
    assert capsys.readouterr().out == expected[1] * 2


def test_health_without_an_aggregator_exits_1(
    aggregator: AggregatorProcess, capsys: Capture
) -> None:
    url = f"https://127.0.0.1:{free_port()}"
    code = main([*_connection(aggregator), "--url", url, "health"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"fedseg-admin: error: cannot reach the aggregator at {url}: ")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--url": "http://127.0.0.1:1"}, "FEDSEG_ADMIN_URL must start with https://, got "
         "'http://127.0.0.1:1'"),
        ({"--ca": "/nonexistent/ca.pem"}, "FEDSEG_ADMIN_CA points to /nonexistent/ca.pem, "
         "which is not a file"),
        ({"--cert": None, "--key": None}, "FEDSEG_ADMIN_CERT (or --cert) is not set; "
         "FEDSEG_ADMIN_KEY (or --key) is not set"),
    ],
)  # fmt: skip
def test_configuration_errors_exit_2_naming_the_setting(
    aggregator: AggregatorProcess, capsys: Capture, change: dict[str, str | None], message: str
) -> None:
    flags = dict(zip(_connection(aggregator)[::2], _connection(aggregator)[1::2], strict=True))
    argv = [x for k, v in {**flags, **change}.items() if v is not None for x in (k, v)]
    assert main([*argv, "health"]) == 2
    assert capsys.readouterr().err == f"fedseg-admin: error: {message}\n"


def test_a_key_readable_by_others_is_refused(
    aggregator: AggregatorProcess, capsys: Capture, tmp_path: Path
) -> None:
    key = tmp_path / "admin-key.pem"
    shutil.copy(Kit.of(aggregator.pki_dir, "admin").key, key)
    key.chmod(0o644)
    assert main([*_connection(aggregator), "--key", str(key), "runs"]) == 2
    assert capsys.readouterr().err == (
        f"fedseg-admin: error: FEDSEG_ADMIN_KEY {key} is readable by group or others; "
        f"chmod 600 it\n"
    )


def test_create_run_from_flags_then_list_and_skip_a_duplicate(
    aggregator: AggregatorProcess, capsys: Capture
) -> None:
    run = _create(
        capsys, aggregator, "flags", "--min-nodes", "1", "--timeout", "600", "--steps", "3",
        "--lr", "0.01", "--privacy", "svt", "--clip", "0.001", "--epsilon", "10",
    )  # fmt: skip
    assert (run.state, run.rounds, run.min_nodes, run.model.init_filters) == ("running", 2, 1, 8)
    assert (run.plan.crop_size, run.plan.max_steps, run.plan.learning_rate) == ((16,) * 3, 3, 0.01)
    assert (run.privacy.mechanism, run.privacy.clip, run.privacy.epsilon) == ("svt", 0.001, 10)
    assert run.aggregation.name == "fedavg"
    code, out, _ = _admin(capsys, aggregator, "runs")
    row = next(
        line for line in out.splitlines() if line.split()[:3] == [str(run.id), "flags", "running"]
    )
    assert row.endswith("site-1, site-2 (min 1)")
    code, out, _ = _admin(
        capsys, aggregator, "create-run", "--unless-active", "--name", "flags",
        "--nodes", "site-1", "--rounds", "1",
    )  # fmt: skip
    assert (code, out) == (0, f"run {run.id} (flags) is already running; not creating another\n")
    code, out, _ = _admin(capsys, aggregator, "rounds", "--run", str(run.id))
    assert code == 0
    assert out.splitlines()[5].split()[:3] == ["1", "open", "0/2"]  # after the legend
    assert _admin(capsys, aggregator, "abort", str(run.id))[:2] == (
        0,
        f"run {run.id} (flags) is now aborted\n",
    )


def test_create_run_from_a_spec_and_privacy_json_with_flags_winning(
    aggregator: AggregatorProcess, capsys: Capture, tmp_path: Path
) -> None:
    spec = tmp_path / "run.json"
    spec.write_text('{"rounds": 5, "expected_nodes": ["site-3"], "plan": {"batch_size": 2}}')
    privacy = '{"mechanism": "gaussian", "noise_multiplier": 1.0, "l2_clip": 0.1}'
    run = _create(
        capsys, aggregator, "spec", "--spec", f"@{spec}", "--privacy-json", privacy,
        "--noise-multiplier", "2", "--hd95", "--strategy", "trimmed-mean", "--trim-fraction",
        "0.25",
    )  # fmt: skip
    assert (run.aggregation.name, run.aggregation.trim_fraction) == ("trimmed-mean", 0.25)
    assert (run.rounds, run.expected_nodes, run.plan.batch_size) == (2, ["site-1", "site-2"], 2)
    assert run.plan.hd95
    assert (run.privacy.mechanism, run.privacy.noise_multiplier, run.privacy.l2_clip) == (
        "gaussian",
        2.0,
        0.1,
    )
    _admin(capsys, aggregator, "abort", str(run.id))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rounds", "1"], "invalid run: expected_nodes (--nodes): Field required"),
        (
            ["--nodes", "a", "--rounds", "1", "--privacy-json", '{"bogus": 1}'],
            "invalid run: privacy.bogus: Extra inputs are not permitted",
        ),
        (["--nodes", "a", "--rounds", "1", "--privacy-json", "{"], "--privacy-json is not "
         "valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        (["--nodes", "a", "--rounds", "1", "--crop", "8", "8"], "--crop takes one edge or "
         "three (D H W), got 2 numbers"),
        (["--nodes", "a", "--rounds", "0"], "invalid run: rounds (--rounds): Input should be "
         "greater than or equal to 1"),
    ],
)  # fmt: skip
def test_create_run_refuses_bad_input_before_sending(
    aggregator: AggregatorProcess, capsys: Capture, args: list[str], message: str
) -> None:
    assert _admin(capsys, aggregator, "create-run", *args) == (
        2,
        "",
        f"fedseg-admin: error: {message}\n",
    )


def test_steering_needs_an_admin_certificate(
    aggregator: AggregatorProcess, capsys: Capture
) -> None:
    code, out, err = _admin(
        capsys, aggregator, "create-run", "--nodes", "site-1", "--rounds", "1", name="site-1"
    )
    assert (code, out) == (1, "")
    assert err == (
        "fedseg-admin: error: POST /api/v1/runs answered 403: this endpoint needs an admin "
        "certificate; site-1 has role node\n"
    )


def test_pause_resume_and_the_wait_for_an_aborted_run(
    aggregator: AggregatorProcess, capsys: Capture
) -> None:
    run = _create(capsys, aggregator, "steer")
    for action, state in (("pause", "paused"), ("resume", "running"), ("abort", "aborted")):
        assert _admin(capsys, aggregator, action, str(run.id))[1] == (
            f"run {run.id} (steer) is now {state}\n"
        )
    code, out, _ = _admin(capsys, aggregator, "wait", "--run", str(run.id), "--interval", "0.1")
    lines = out.splitlines()
    assert code == 1
    assert lines[0] == f"[   0.0s] run {run.id} (steer): 2 rounds over site-1, site-2"
    assert lines[1].startswith(f"[   0.0s] run {run.id} round 1/2: aborted, 0/2 reported")
    assert lines[-1].startswith(f"run {run.id}: aborted")
    assert _admin(capsys, aggregator, "pause", "999")[:2] == (1, "")


def test_wait_gives_up_after_its_timeout(aggregator: AggregatorProcess, capsys: Capture) -> None:
    run = _create(capsys, aggregator, "slow")
    code, out, err = _admin(
        capsys, aggregator, "wait", "--run", str(run.id), "--interval", "0.1", "--timeout", "0.3"
    )
    assert code == 1
    assert f"run {run.id} round 1/2: open, 0/2 reported" in out
    assert err == f"fedseg-admin: error: run {run.id} is still running after 0.3 s\n"
    _admin(capsys, aggregator, "abort", str(run.id))


def test_nodes_lists_who_announced(aggregator: AggregatorProcess, capsys: Capture) -> None:
    announcement = Announcement(
        protocol=PROTOCOL_VERSION,
        software_version="fedseg test",
        device="cpu",
        num_train_cases=7,
        num_val_cases=2,
    )
    with aggregator.client("site-3") as http:
        answer = http.post("/api/v1/nodes/announce", json=announcement.model_dump())
        assert answer.status_code == 200
    code, out, _ = _admin(capsys, aggregator, "nodes")
    row = next(line for line in out.splitlines() if line.startswith("site-3 "))
    assert code == 0
    assert row.split()[1:3] == ["node", "ok"]
    assert row.split()[-4:] == ["0", "7", "-", "cpu"]


def test_remove_node_then_runs_and_rounds_read_well(
    aggregator: AggregatorProcess, capsys: Capture
) -> None:
    run = _create(capsys, aggregator, "removal", "--min-nodes", "1")
    code, out, err = _admin(capsys, aggregator, "remove-node", str(run.id), "site-2")
    assert (code, err) == (0, "")
    assert out == (
        f"node site-2 removed from run {run.id}: it gets no more tasks and the open round "
        "waits only for site-1\n"
    )
    code, out, err = _admin(capsys, aggregator, "remove-node", str(run.id), "site-2")
    assert code == 1
    assert err == (
        f"fedseg-admin: error: DELETE /api/v1/runs/{run.id}/nodes/site-2 answered 404: "
        f"node site-2 is not one of run {run.id}'s expected nodes\n"
    )
    code, out, _ = _admin(capsys, aggregator, "rounds", "--run", str(run.id))
    assert code == 0
    assert out.startswith("before: mean Dice of the round's base model")
    assert out.splitlines()[-1].startswith("round 1 open: missing site-1; deadline in ")
    code, out, _ = _admin(capsys, aggregator, "runs")
    row = next(line for line in out.splitlines() if " removal " in line)
    assert row.split()[3] == "1/2"
    assert "node site-2 removed (removed by an administrator)" in out
    _admin(capsys, aggregator, "abort", str(run.id))


def test_export_writes_the_model_and_three_tables_once(
    aggregator: AggregatorProcess, capsys: Capture, tmp_path: Path
) -> None:
    run = _create(capsys, aggregator, "export", "--min-nodes", "1")
    out = tmp_path / "study"
    code, printed, err = _admin(capsys, aggregator, "export", str(run.id), "--out", str(out))
    assert (code, err) == (0, "")
    assert printed.startswith(f"run {run.id} (export, running): wrote {out}/model.safetensors")
    model = (out / "model.safetensors").read_bytes()
    assert hashlib.sha256(model).hexdigest() == run.global_model
    rounds = list(csv.DictReader((out / "rounds.csv").read_text().splitlines()))
    assert [(r["round"], r["state"], r["expected_nodes"]) for r in rounds] == [
        ("1", "open", "site-1 site-2")
    ]
    header = csv.DictReader((out / "nodes.csv").read_text().splitlines()).fieldnames or []
    assert {"name", "state", "epsilon_total", "last_error"} <= set(header)
    assert (out / "privacy.csv").read_text().startswith("round,node,status,mechanism,")
    code, _, err = _admin(capsys, aggregator, "export", str(run.id), "--out", str(out))
    assert code == 2
    assert err.startswith("fedseg-admin: error: ")
    assert "already exist" in err
    assert hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest() == run.global_model
    _admin(capsys, aggregator, "abort", str(run.id))


def test_revoke_a_certificate_refuses_its_next_request_and_records_it_in_the_crl(
    aggregator: AggregatorProcess, capsys: Capture, tmp_path: Path
) -> None:
    issued = pki.issue_client_certificate(aggregator.pki_dir, "site-8", Role.NODE, out_dir=tmp_path)
    serial = pki.load_certificate(issued.certificate).serial_number
    node = Kit(aggregator.pki_dir / "ca.pem", issued.certificate, issued.private_key)
    ca_copy = tmp_path / "ca"
    ca_copy.mkdir()
    for name in ("ca.pem", "ca-key.pem"):
        shutil.copy2(aggregator.pki_dir / name, ca_copy / name)
    with node.http(aggregator.url) as http:
        assert http.get("/api/v1/health").status_code == 200
        code, out, err = _admin(
            capsys, aggregator, "revoke", "--cert", str(issued.certificate),
            "--reason", "laptop stolen", "--pki", str(ca_copy),
        )  # fmt: skip
        assert (code, err) == (0, "")
        assert out.splitlines() == [
            f"revoked site-8 (serial {serial:x}): refused from its next request on",
            f"CRL: {ca_copy}/crl.pem (number 1, 1 revoked)",
        ]
        refused = http.get("/api/v1/health")  # the same keep-alive connection
    assert refused.status_code == 403
    assert refused.json() == {
        "detail": f"certificate {serial:x} of site-8 has been revoked; "
        "ask the federation's operator for a new certificate",
        "code": "certificate_revoked",
    }
    assert [e.serial_number for e in pki.load_crl(ca_copy / "crl.pem")] == [serial]


def test_revoke_by_serial_and_its_usage_errors(
    aggregator: AggregatorProcess, capsys: Capture, tmp_path: Path
) -> None:
    issued = pki.issue_client_certificate(aggregator.pki_dir, "site-9", Role.NODE, out_dir=tmp_path)
    serial = f"{pki.load_certificate(issued.certificate).serial_number:x}"
    assert _admin(capsys, aggregator, "revoke", "--serial", serial) == (
        2,
        "",
        "fedseg-admin: error: --serial needs --name, the holder's name (CN)\n",
    )
    code, out, _ = _admin(capsys, aggregator, "revoke", "--serial", serial, "--name", "site-9")
    assert (code, out) == (
        0,
        f"revoked site-9 (serial {serial}): refused from its next request on\n",
    )
    node = Kit(aggregator.pki_dir / "ca.pem", issued.certificate, issued.private_key)
    with node.http(aggregator.url) as http:
        assert http.get("/api/v1/health").status_code == 403
    pki.create_ca(tmp_path / "rogue")
    rogue = pki.issue_client_certificate(tmp_path / "rogue", "site-1", Role.NODE)
    code, _, err = _admin(capsys, aggregator, "revoke", "--cert", str(rogue.certificate))
    assert code == 2
    assert err.startswith(
        f"fedseg-admin: error: {rogue.certificate} was not issued by the federation CA"
    )


@pytest.mark.parametrize(
    ("cn", "ou"), [("../../etc", "node"), ("n" * 64, "node"), ("odd name\u00e9", "nobody")]
)
def test_every_certificate_the_ca_signed_can_be_revoked_whatever_its_name(
    aggregator: AggregatorProcess, capsys: Capture, tmp_path: Path, cn: str, ou: str
) -> None:
    cert = odd_certificate(aggregator.pki_dir, tmp_path, cn, ou, [ExtendedKeyUsageOID.CLIENT_AUTH])
    serial = f"{pki.load_certificate(cert).serial_number:x}"
    label = cn.replace("\u00e9", "?")
    code, out, err = _admin(capsys, aggregator, "revoke", "--cert", str(cert), "--reason", "odd")
    assert (code, out, err) == (0, f"revoked {label} (serial {serial}): refused from its next "
                                "request on\n", "")  # fmt: skip
    with sqlite3.connect(aggregator.state_dir / "aggregator.db") as db:
        rows = db.execute(
            "SELECT name, reason FROM revoked_certificates WHERE serial = ?", (serial,)
        ).fetchall()
    assert rows == [(label, "odd")]
    again = _admin(capsys, aggregator, "revoke", "--serial", serial, "--name", label)
    assert again[0] == 0
