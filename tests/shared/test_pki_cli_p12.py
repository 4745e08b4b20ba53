"""``fedseg-pki p12``: a browser-importable PKCS#12 of a node's or admin's certificate."""

from __future__ import annotations

import getpass
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from shared import pki
from shared.pki_cli import main

Capture = pytest.CaptureFixture[str]
PASSPHRASE = "correct horse battery"


def _passphrase_file(tmp_path: Path, text: str = PASSPHRASE + "\n") -> Path:
    path = tmp_path / "passphrase"
    path.write_text(text)
    path.chmod(0o600)
    return path


def _export(pki_dir: Path, out: Path, *extra: str, name: str = "admin") -> list[str]:
    return ["p12", "--cert", str(pki_dir / f"{name}.pem"),
            "--key", str(pki_dir / f"{name}-key.pem"), "--out", str(out), *extra]  # fmt: skip


def _spki(key: object) -> bytes:
    return key.public_key().public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize("legacy", [False, True])
def test_p12_bundles_certificate_key_and_ca_with_mode_0600(
    pki_dir: Path, tmp_path: Path, capsys: Capture, legacy: bool
) -> None:
    out = tmp_path / "admin.p12"
    args = ["--ca", str(pki_dir / "ca.pem"), "--passphrase-file", str(_passphrase_file(tmp_path))]
    code = main(_export(pki_dir, out, *args, *(["--legacy"] if legacy else [])))
    captured = capsys.readouterr()
    assert (code, captured.err) == (0, "")
    assert captured.out == (
        f"PKCS#12: {out} (admin, admin; 0600, passphrase-protected)\n"
        "import it into the browser's certificate store; deploy/README.md, section Dashboard\n"
    )
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    bundle = pkcs12.load_pkcs12(out.read_bytes(), PASSPHRASE.encode())
    assert bundle.cert is not None
    assert bundle.cert.certificate == pki.load_certificate(pki_dir / "admin.pem")
    assert bundle.cert.friendly_name == b"admin"
    assert [c.certificate for c in bundle.additional_certs] == [
        pki.load_certificate(pki_dir / "ca.pem")
    ]
    key = serialization.load_pem_private_key((pki_dir / "admin-key.pem").read_bytes(), None)
    assert _spki(bundle.key) == _spki(key)
    with pytest.raises(ValueError, match="Invalid password"):
        pkcs12.load_pkcs12(out.read_bytes(), b"wrong passphrase")


def test_p12_asks_twice_on_a_terminal(
    pki_dir: Path, tmp_path: Path, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter([PASSPHRASE, PASSPHRASE, PASSPHRASE, "something else"])
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(getpass, "getpass", lambda prompt: next(answers))
    assert main(_export(pki_dir, tmp_path / "a.p12", name="site-1")) == 0
    assert pkcs12.load_pkcs12((tmp_path / "a.p12").read_bytes(), PASSPHRASE.encode()).cert
    capsys.readouterr()
    assert main(_export(pki_dir, tmp_path / "b.p12", name="site-1")) == 2
    assert capsys.readouterr().err == (
        "fedseg-pki: error: the two passphrases differ; nothing was written\n"
    )
    assert not (tmp_path / "b.p12").exists()


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        (["--passphrase-file", "{short}"], "the passphrase needs at least 8 characters"),
        (["--passphrase-file", "{missing}"],
         "--passphrase-file {missing} cannot be read: No such file or directory"),
        (["--passphrase", PASSPHRASE], "unrecognized arguments: --passphrase " + PASSPHRASE),
    ],
)  # fmt: skip
def test_p12_refuses_a_bad_passphrase_source_in_one_line(
    pki_dir: Path, tmp_path: Path, capsys: Capture, extra: list[str], error: str
) -> None:
    paths = {"short": str(_passphrase_file(tmp_path, "short\n")),
             "missing": str(tmp_path / "nothing")}  # fmt: skip
    args = [a.format(**paths) for a in extra]
    assert main(_export(pki_dir, tmp_path / "x.p12", *args)) == 2
    assert capsys.readouterr().err == f"fedseg-pki: error: {error.format(**paths)}\n"
    assert not (tmp_path / "x.p12").exists()


def test_p12_refuses_a_key_of_another_holder(
    pki_dir: Path, tmp_path: Path, capsys: Capture
) -> None:
    out = tmp_path / "x.p12"
    args = ["p12", "--cert", str(pki_dir / "admin.pem"), "--key", str(pki_dir / "site-1-key.pem"),
            "--out", str(out), "--passphrase-file", str(_passphrase_file(tmp_path))]  # fmt: skip
    assert main(args) == 2
    assert capsys.readouterr().err == (
        f"fedseg-pki: error: {pki_dir / 'site-1-key.pem'} is not the private key of "
        f"{pki_dir / 'admin.pem'}\n"
    )
    assert not out.exists()


def test_p12_refuses_a_server_certificate_and_an_existing_file(
    pki_dir: Path, tmp_path: Path, capsys: Capture
) -> None:
    phrase = ["--passphrase-file", str(_passphrase_file(tmp_path))]
    assert main(_export(pki_dir, tmp_path / "s.p12", *phrase, name="aggregator")) == 2
    assert capsys.readouterr().err == (
        f"fedseg-pki: error: {pki_dir / 'aggregator.pem'} is a server certificate; "
        "export a node or admin one\n"
    )
    existing = tmp_path / "kept.p12"
    existing.write_bytes(b"keep me")
    assert main(_export(pki_dir, existing, *phrase)) == 2
    assert capsys.readouterr().err == (
        f"fedseg-pki: error: {existing} already exists; remove it or choose another --out\n"
    )
    assert existing.read_bytes() == b"keep me"


def test_p12_without_a_terminal_or_passphrase_file_is_one_line(
    pki_dir: Path, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "shared.pki_cli", *_export(pki_dir, tmp_path / "x.p12")],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "fedseg-pki: error: no terminal to ask for a passphrase; give --passphrase-file FILE\n"
    )


def test_p12_checks_every_file_before_asking_for_a_passphrase(
    pki_dir: Path, tmp_path: Path, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(prompt: str) -> str:
        raise AssertionError(f"asked {prompt!r} before the files were checked")

    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(getpass, "getpass", never)
    args = ["p12", "--cert", str(pki_dir / "admin.pem"), "--key", str(tmp_path / "none.pem"),
            "--out", str(tmp_path / "x.p12")]  # fmt: skip
    assert main(args) == 2
    assert capsys.readouterr().err == (
        f"fedseg-pki: error: private key file {tmp_path / 'none.pem'} does not exist\n"
    )
