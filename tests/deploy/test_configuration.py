"""Each service refuses an insecure or incomplete configuration and names the setting."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from services.aggregator.core.config import AggregatorSettings
from services.aggregator.server import main as aggregator_main
from services.node.main import main as node_main
from shared import pki

Capture = pytest.CaptureFixture[str]


@pytest.fixture
def tls_env(pki_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("FEDSEG_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("FEDSEG_TLS_CERT", str(pki_dir / "aggregator.pem"))
    monkeypatch.setenv("FEDSEG_TLS_KEY", str(pki_dir / "aggregator-key.pem"))
    monkeypatch.setenv("FEDSEG_TLS_CA", str(pki_dir / "ca.pem"))
    return pki_dir


def _expired_crl(pki_dir: Path, path: Path) -> Path:
    ca = pki.load_certificate(pki_dir / "ca.pem")
    key = serialization.load_pem_private_key((pki_dir / "ca-key.pem").read_bytes(), None)
    now = datetime.now(UTC)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject)
        .last_update(now - timedelta(days=2))
        .next_update(now - timedelta(days=1))
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return path


def test_aggregator_accepts_a_current_crl(tls_env: Path, tmp_path: Path) -> None:
    pki.create_ca(tmp_path)
    crl = pki.issue_crl(tmp_path).path
    assert AggregatorSettings(tls_crl=crl).tls_crl == crl  # type: ignore[call-arg]


@pytest.mark.parametrize("problem", ["missing", "garbage", "expired"])
def test_aggregator_refuses_a_bad_crl_by_name(
    tls_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capture, problem: str
) -> None:
    path = tmp_path / "crl.pem"
    if problem == "garbage":
        path.write_text("not a CRL")
    elif problem == "expired":
        _expired_crl(tls_env, path)
    monkeypatch.setenv("FEDSEG_TLS_CRL", str(path))
    assert aggregator_main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fedseg-aggregator: configuration error: ")
    expected = {
        "missing": f"FEDSEG_TLS_CRL points to {path}, which is not a file",
        "garbage": f"FEDSEG_TLS_CRL {path} is not a PEM certificate revocation list",
        "expired": f"FEDSEG_TLS_CRL {path} expired at ",
    }
    assert expected[problem] in err


def test_aggregator_refuses_a_key_others_can_read(
    tls_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    key = tmp_path / "aggregator-key.pem"
    key.write_bytes((tls_env / "aggregator-key.pem").read_bytes())
    key.chmod(0o640)
    monkeypatch.setenv("FEDSEG_TLS_KEY", str(key))
    assert aggregator_main([]) == 2
    assert f"FEDSEG_TLS_KEY {key} is readable by group or others; chmod 600 it" in (
        capsys.readouterr().err
    )


def test_aggregator_without_its_certificate_names_it(
    tls_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    monkeypatch.delenv("FEDSEG_TLS_CERT")
    assert aggregator_main([]) == 2
    assert "tls_cert" in capsys.readouterr().err.lower()


def test_node_refuses_plain_http(
    pki_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    settings = {
        "FEDSEG_AGGREGATOR_URL": "http://aggregator:8443",
        "FEDSEG_TLS_CERT": str(pki_dir / "site-1.pem"),
        "FEDSEG_TLS_KEY": str(pki_dir / "site-1-key.pem"),
        "FEDSEG_TLS_CA": str(pki_dir / "ca.pem"),
        "FEDSEG_DATA_DIR": str(tmp_path),
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    assert node_main([]) == 2
    assert (
        "FEDSEG_AGGREGATOR_URL must start with https://, got 'http://aggregator:8443'"
        in capsys.readouterr().err
    )
