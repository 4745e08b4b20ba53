"""Tests for the ``fedseg-pki`` command line: exit codes, output and one-line errors."""

from __future__ import annotations

import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509

from shared import pki
from shared.identity import Role, identity_from_certificate
from shared.pki_cli import main

REPO_ROOT = Path(__file__).resolve().parents[2]
Capture = pytest.CaptureFixture[str]


def _run(capsys: Capture, command: str) -> tuple[int, str, str]:
    """Run ``fedseg-pki <command>`` in-process; return (exit code, stdout, stderr)."""
    code = main(shlex.split(command))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _sans(path: Path) -> list[str]:
    cert = pki.load_certificate(path)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    return sans.get_values_for_type(x509.DNSName) + ips


def _role(path: Path) -> Role:
    return identity_from_certificate(pki.load_certificate(path)).role


def test_init_creates_the_ca_and_keeps_it(tmp_path: Path, capsys: Capture) -> None:
    assert _run(capsys, f"init --dir {tmp_path}") == (0, f"CA certificate: {tmp_path}/ca.pem\n", "")
    first = (tmp_path / "ca.pem").read_bytes()
    assert _run(capsys, f"init --dir {tmp_path}")[0] == 0
    assert (tmp_path / "ca.pem").read_bytes() == first


def test_server_takes_repeated_dns_and_ip(tmp_path: Path, capsys: Capture) -> None:
    pki.create_ca(tmp_path)
    command = f"server --dir {tmp_path} --name agg --dns a.example b.example --dns c --ip 10.0.0.5"
    code, out, err = _run(capsys, command)
    assert (code, err) == (0, "")
    assert out == f"certificate: {tmp_path}/agg.pem\nprivate key: {tmp_path}/agg-key.pem\n"
    assert _sans(tmp_path / "agg.pem") == ["a.example", "b.example", "c", "10.0.0.5"]


def test_server_defaults_to_localhost(tmp_path: Path, capsys: Capture) -> None:
    pki.create_ca(tmp_path)
    assert _run(capsys, f"server --dir {tmp_path}")[0] == 0
    assert _sans(tmp_path / "aggregator.pem") == ["localhost", "127.0.0.1"]


def test_client_issues_an_admin_certificate(tmp_path: Path, capsys: Capture) -> None:
    pki.create_ca(tmp_path)
    code, out, err = _run(capsys, f"client --dir {tmp_path} --name ops --role admin")
    assert (code, err) == (0, "")
    assert out == f"certificate: {tmp_path}/ops.pem\nprivate key: {tmp_path}/ops-key.pem\n"
    assert _role(tmp_path / "ops.pem") is Role.ADMIN


def test_client_without_a_ca_is_a_one_line_error(tmp_path: Path, capsys: Capture) -> None:
    message = f"{tmp_path} holds no CA ({tmp_path}/ca.pem is missing); run `fedseg-pki init` first"
    assert _run(capsys, f"client --dir {tmp_path} --name site-1 --role node") == (
        2,
        "",
        f"fedseg-pki: error: {message}\n",
    )


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("", "the following arguments are required: COMMAND"),
        (
            "client --dir d --name x --role server",
            "argument --role: invalid choice: 'server' (choose from 'node', 'admin')",
        ),
        ("client --dir d --role node", "the following arguments are required: --name"),
        (
            "kit --dir d --out k",
            "give exactly one of --name (new key) and --csr (the hospital's key)",
        ),
        ("revoke --dir d", "give exactly one of --cert and --serial"),
        ("revoke --dir d --serial xyz", "--serial must be hexadecimal, got 'xyz'"),
        (
            "revoke --dir d --serial 1 --reason bored",
            "argument --reason: invalid choice: 'bored' (choose from 'affiliation-changed', "
            "'cessation-of-operation', 'key-compromise', 'privilege-withdrawn', 'superseded')",
        ),
        (
            "rotate",
            "argument COMMAND: invalid choice: 'rotate' (choose from 'init', 'server', "
            "'client', 'csr', 'sign', 'bootstrap', 'kit', 'revoke', 'crl', 'p12', 'show')",
        ),
    ],
)
def test_usage_errors_exit_2_with_one_line(capsys: Capture, command: str, message: str) -> None:
    assert _run(capsys, command) == (2, "", f"fedseg-pki: error: {message}\n")


def test_bad_name_is_reported(tmp_path: Path, capsys: Capture) -> None:
    pki.create_ca(tmp_path)
    assert _run(capsys, f"client --dir {tmp_path} --name ../x --role node") == (
        2,
        "",
        "fedseg-pki: error: name '../x' is not allowed: use 1-63 letters, digits, '.', '_' or "
        "'-', starting with a letter or digit\n",
    )


def test_csr_then_sign(tmp_path: Path, capsys: Capture) -> None:
    pki.create_ca(tmp_path / "ca")
    code, out, _ = _run(capsys, f"csr --out {tmp_path}/h --name site-3")
    assert code == 0
    assert out.splitlines() == [
        f"private key: {tmp_path}/h/site-3-key.pem (keep it here; it never leaves this machine)",
        f"request:     {tmp_path}/h/site-3.csr (send this to the federation's CA operator)",
    ]
    (tmp_path / "h/site-3-key.pem").unlink()  # the CA operator never sees the key
    sign = f"sign --dir {tmp_path}/ca --csr {tmp_path}/h/site-3.csr --role node"
    code, out, _ = _run(capsys, f"{sign} --out {tmp_path}/site-3.pem")
    assert (code, out) == (0, f"certificate: {tmp_path}/site-3.pem\n")
    assert _role(tmp_path / "site-3.pem") is Role.NODE


def test_sign_refuses_a_role_mismatch(tmp_path: Path, capsys: Capture) -> None:
    pki.create_ca(tmp_path)
    csr = pki.create_signing_request(tmp_path, "site-3", Role.NODE).request
    message = f"{csr} asks for role (OU) node, but it is being signed as admin"
    assert _run(capsys, f"sign --dir {tmp_path} --csr {csr} --role admin --out {tmp_path}/o") == (
        2,
        "",
        f"fedseg-pki: error: {message}\n",
    )
    assert not (tmp_path / "o").exists()


def test_bootstrap_creates_then_keeps(tmp_path: Path, capsys: Capture) -> None:
    command = f"bootstrap --dir {tmp_path} --nodes site-1 site-2 --ip 10.0.0.5"
    assert _run(capsys, command) == (0, f"PKI ready in {tmp_path}\n", "")
    names = ["admin", "aggregator", "ca", "site-1", "site-2"]
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert sorted(before) == sorted([f"{n}.pem" for n in names] + [f"{n}-key.pem" for n in names])
    assert _sans(tmp_path / "aggregator.pem") == ["localhost", "10.0.0.5"]
    assert _role(tmp_path / "admin.pem") is Role.ADMIN
    assert _run(capsys, command)[0] == 0
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_bootstrap_with_named_admins(tmp_path: Path, capsys: Capture) -> None:
    assert _run(capsys, f"bootstrap --dir {tmp_path} --nodes s1 --admin ops --admin sec")[0] == 0
    assert not (tmp_path / "admin.pem").exists()
    assert [_role(tmp_path / f"{n}.pem") for n in ("s1", "ops", "sec")] == [
        Role.NODE,
        Role.ADMIN,
        Role.ADMIN,
    ]


def test_kit_issues_a_node_kit_then_keeps_it(tmp_path: Path, capsys: Capture) -> None:
    pki.create_ca(tmp_path / "ca")
    command = (
        f"kit --dir {tmp_path}/ca --name site-4 --out {tmp_path}/kits/site-4 "
        f"--aggregator-url https://agg.example:8443"
    )
    code, out, err = _run(capsys, command)
    kit = tmp_path / "kits/site-4"
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"kit for site-4 (node) in {kit}:",
        f"certificate: {kit}/site-4.pem (issued)",
        f"private key: {kit}/site-4-key.pem (0600; hand the kit over privately)",
        f"CA:          {kit}/ca.pem",
        f"settings:    {kit}/node.env (paths as mounted at /kit)",
    ]
    assert sorted(p.name for p in kit.iterdir()) == [
        "ca.pem",
        "node.env",
        "site-4-key.pem",
        "site-4.pem",
    ]
    assert (
        _run(capsys, command)[1].splitlines()[1]
        == f"certificate: {kit}/site-4.pem (kept, still valid)"
    )


def test_kit_from_a_hospital_request(tmp_path: Path, capsys: Capture) -> None:
    pki.create_ca(tmp_path / "ca")
    csr = pki.create_signing_request(tmp_path / "hospital", "site-7", Role.NODE).request
    command = (
        f"kit --dir {tmp_path}/ca --csr {csr} --out {tmp_path}/kit --aggregator-url "
        f"https://agg.example:8443 --mount /etc/fedseg/kit"
    )
    code, out, _ = _run(capsys, command)
    assert code == 0
    assert out.splitlines()[2] == "private key: none; it stays where site-7's request was made"
    assert sorted(p.name for p in (tmp_path / "kit").iterdir()) == [
        "ca.pem",
        "node.env",
        "site-7.pem",
    ]
    env = (tmp_path / "kit/node.env").read_text()
    assert "FEDSEG_TLS_KEY=/etc/fedseg/kit/site-7-key.pem\n" in env
    assert _role(tmp_path / "kit/site-7.pem") is Role.NODE


def test_bootstrap_writes_kits_apart_from_the_ca(tmp_path: Path, capsys: Capture) -> None:
    command = (
        f"bootstrap --dir {tmp_path}/ca --kits {tmp_path}/kits --nodes site-1 "
        f"--aggregator-url https://aggregator:8443 --dns aggregator"
    )
    assert _run(capsys, command) == (
        0,
        f"PKI ready in {tmp_path}/ca, kits in {tmp_path}/kits\n",
        "",
    )
    assert sorted(p.name for p in (tmp_path / "ca").iterdir()) == ["ca-key.pem", "ca.pem"]
    assert sorted(p.name for p in (tmp_path / "kits").iterdir()) == [
        "admin",
        "aggregator",
        "site-1",
    ]
    assert _sans(tmp_path / "kits/aggregator/aggregator.pem") == ["aggregator", "127.0.0.1"]


def test_revoke_by_certificate_or_serial_then_refresh(tmp_path: Path, capsys: Capture) -> None:
    pki.create_ca(tmp_path)
    cert = pki.issue_client_certificate(tmp_path, "site-2", Role.NODE).certificate
    serial = pki.load_certificate(cert).serial_number
    code, out, err = _run(capsys, f"revoke --dir {tmp_path} --cert {cert} --reason key-compromise")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"revoked site-2 (node), serial {serial:x}"
    assert lines[1].startswith(f"CRL: {tmp_path}/crl.pem (number 1, 1 revoked, valid until ")
    assert lines[2] == f"to refuse it at once, without a restart: fedseg-admin revoke --cert {cert}"
    out = _run(capsys, f"revoke --dir {tmp_path} --serial 0ABC")[1].splitlines()
    assert out[0] == "revoked serial 0abc"
    assert out[2] == (
        "to refuse it at once, without a restart: fedseg-admin revoke --serial 0abc --name NAME"
    )
    code, out, _ = _run(capsys, f"crl --dir {tmp_path} --valid-days 30")
    assert code == 0
    assert out.startswith(f"CRL: {tmp_path}/crl.pem (number 3, 2 revoked, valid until ")
    crl = pki.load_crl(tmp_path / "crl.pem")
    assert {e.serial_number for e in crl} == {serial, 0xABC}


def test_show_prints_the_fields(tmp_path: Path, capsys: Capture) -> None:
    pki.create_ca(tmp_path)
    paths = pki.issue_server_certificate(tmp_path, dns_names=["agg.example"], ip_addresses=["::1"])
    cert = pki.load_certificate(paths.certificate)
    code, out, _ = _run(capsys, f"show {paths.certificate}")
    assert code == 0
    assert out.splitlines() == [
        "subject:  OU=server,CN=aggregator",
        "issuer:   CN=fedseg federation CA",
        "role:     server",
        f"serial:   {cert.serial_number:x}",
        f"validity: {cert.not_valid_before_utc.isoformat()} to "
        f"{cert.not_valid_after_utc.isoformat()} (valid)",
        "SANs:     DNS:agg.example, IP:::1",
    ]


def test_show_marks_an_expired_certificate(tmp_path: Path, capsys: Capture) -> None:
    pki.create_ca(tmp_path)
    start, end = datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 2, 1, tzinfo=UTC)
    paths = pki.issue_client_certificate(
        tmp_path, "old", Role.NODE, not_valid_before=start, not_valid_after=end
    )
    out = _run(capsys, f"show {paths.certificate}")[1].splitlines()
    assert out[2:] == [
        "role:     node",
        f"serial:   {pki.load_certificate(paths.certificate).serial_number:x}",
        "validity: 2020-01-01T00:00:00+00:00 to 2020-02-01T00:00:00+00:00 (expired)",
        "SANs:     (none)",
    ]


def test_module_runs_as_a_script_and_exits_2(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "shared.pki_cli", "show", str(tmp_path / "missing.pem")]
    result = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    message = f"certificate file {tmp_path}/missing.pem does not exist"
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"fedseg-pki: error: {message}\n"
