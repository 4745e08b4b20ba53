"""deploy/README.md's onboarding, end to end: kits, a hospital's own key, revocation."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from services.admin.main import main as fedseg_admin
from services.demo.processes import Kit, free_port, spawn, stop, wait_healthy
from services.node.config import NodeSettings
from shared.pki_cli import main as fedseg_pki

pytestmark = pytest.mark.slow


def _settings(env_file: Path) -> dict[str, str]:
    lines = env_file.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def _pki(*args: str | Path) -> None:
    assert fedseg_pki([str(a) for a in args]) == 0


def _aggregator(kit: Path, port: int, state: Path) -> subprocess.Popen[bytes]:
    """The aggregator as its kit's env file sets it up, with a port, a state folder and a CRL."""
    env = {**_settings(kit / "aggregator.env"), "FEDSEG_HOST": "127.0.0.1"}
    env |= {"FEDSEG_PORT": str(port), "FEDSEG_STATE_DIR": str(state)}
    env |= {"FEDSEG_TLS_CRL": str(kit / "crl.pem"), "FEDSEG_LOG_LEVEL": "warning"}
    return spawn("services.aggregator.server", env, state.parent / "aggregator.log")


def test_hospitals_join_with_a_kit_or_their_own_key_and_a_revoked_one_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca, kits, port = tmp_path / "ca", tmp_path / "kits", free_port()
    url = f"https://127.0.0.1:{port}"
    # The CA operator: the CA, the server's kit with an (empty) CRL, an operator's kit.
    _pki("init", "--dir", ca)
    _pki("kit", "--dir", ca, "--role", "server", "--name", "aggregator", "--out",
         kits / "aggregator", "--mount", kits / "aggregator", "--ip", "127.0.0.1")  # fmt: skip
    _pki("crl", "--dir", ca)
    shutil.copy(ca / "crl.pem", kits / "aggregator" / "crl.pem")
    _pki("kit", "--dir", ca, "--role", "admin", "--name", "ops", "--out", kits / "ops",
         "--mount", kits / "ops", "--aggregator-url", url)  # fmt: skip
    # Hospital 1 receives a whole kit; hospital 2 keeps its key and sends a request.
    _pki("kit", "--dir", ca, "--name", "site-1", "--out", kits / "site-1", "--mount",
         kits / "site-1", "--aggregator-url", url)  # fmt: skip
    hospital = tmp_path / "hospital-2"
    _pki("csr", "--out", hospital, "--name", "site-2")
    _pki("kit", "--dir", ca, "--csr", hospital / "site-2.csr", "--out", kits / "site-2",
         "--mount", hospital, "--aggregator-url", url)  # fmt: skip
    for name in ("site-2.pem", "ca.pem", "node.env"):
        shutil.copy(kits / "site-2" / name, hospital / name)
    for kit in kits.iterdir():
        assert not (kit / "ca-key.pem").exists()
        assert b"PRIVATE KEY" not in (kit / "ca.pem").read_bytes()
    capsys.readouterr()

    aggregator = _aggregator(kits / "aggregator", port, tmp_path / "state")
    nodes: dict[str, Kit] = {}
    try:
        admin_env = ["--env-file", str(kits / "ops" / "admin.env")]
        # Each node's settings come from its env file alone (plus its data folder).
        for name, folder in (("site-1", kits / "site-1"), ("site-2", hospital)):
            (tmp_path / "data" / name).mkdir(parents=True)
            settings = NodeSettings(
                _env_file=folder / "node.env",  # type: ignore[call-arg]
                data_dir=tmp_path / "data" / name,
            )
            assert settings.aggregator_url == url
            nodes[name] = Kit(settings.tls_ca, settings.tls_cert, settings.tls_key)
        with nodes["site-1"].http(url) as probe:
            wait_healthy(probe, aggregator, tmp_path / "aggregator.log")
        assert fedseg_admin([*admin_env, "health"]) == 0
        with nodes["site-1"].http(url) as site_1, nodes["site-2"].http(url) as site_2:
            assert site_2.get("/api/v1/health").status_code == 200
            revoke = ["revoke", "--cert", str(hospital / "site-2.pem"), "--pki", str(ca)]
            assert fedseg_admin([*admin_env, *revoke]) == 0
            refused = site_2.get("/api/v1/health")
            assert refused.status_code == 403
            assert refused.json()["code"] == "certificate_revoked"
            assert site_1.get("/api/v1/health").status_code == 200
    finally:
        stop(aggregator)
    # Restarted with the CA's new CRL and fresh state, the TLS handshake itself refuses site-2.
    shutil.copy(ca / "crl.pem", kits / "aggregator" / "crl.pem")
    aggregator = _aggregator(kits / "aggregator", port, tmp_path / "fresh-state")
    try:
        with nodes["site-1"].http(url) as site_1:
            wait_healthy(site_1, aggregator, tmp_path / "aggregator.log")
        with nodes["site-2"].http(url) as site_2, pytest.raises(httpx.TransportError) as failed:
            site_2.get("/api/v1/health")
    finally:
        stop(aggregator)
    # No HTTP answer at all: this state has no denylist, so only the CRL can have refused it.
    assert isinstance(failed.value, httpx.ConnectError | httpx.RemoteProtocolError)
