"""Hospital kits: a holder's certificate, key, CA and env file in a folder of its own."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from shared.errors import PKIError
from shared.identity import Role, identity_from_certificate
from shared.pki.ca import (
    CA_CERTIFICATE,
    CA_PRIVATE_KEY,
    _load_ca,
    check_issued_by,
    load_certificate,
)
from shared.pki.files import _CERT_MODE, _check_name, _write_atomic
from shared.pki.issue import (
    DEFAULT_DNS_NAMES,
    DEFAULT_IP_ADDRESSES,
    issue_client_certificate,
    issue_server_certificate,
    sign_request,
)

KIT_MOUNT = "/kit"
"""Where a kit folder is mounted in the container that uses it; its env file names paths there."""
KIT_ENV_FILES = {"node": "node.env", "admin": "admin.env", "server": "aggregator.env"}


@dataclass(frozen=True)
class IssuedKit:
    """A holder's kit folder: its certificate, its key (absent when it kept it), CA, env file."""

    folder: Path
    name: str
    role: Role
    certificate: Path
    private_key: Path | None
    ca: Path
    env_file: Path
    issued: bool
    """False when the folder already held a valid certificate from this CA, which was kept."""


def issue_kit(
    pki_dir: Path,
    out_dir: Path,
    name: str,
    role: Role = Role.NODE,
    *,
    aggregator_url: str | None = None,
    mount: str = KIT_MOUNT,
    dns_names: Sequence[str] = DEFAULT_DNS_NAMES,
    ip_addresses: Sequence[str] = DEFAULT_IP_ADDRESSES,
    valid_days: int = 825,
) -> IssuedKit:
    """Write a holder's kit: ``<name>.pem``, ``<name>-key.pem`` (0600), ``ca.pem``, env file.

    Never the CA's key. A folder that already holds a certificate of this name and role from
    this CA, with its key, keeps them (``issued`` is False); ca.pem and the env file are
    rewritten. ``mount`` is where the folder will be in the container that uses it.
    """
    _check_name(name)
    url = _kit_url(role, aggregator_url)
    _check_kit_folder(pki_dir, out_dir)
    ca_cert, _ = _load_ca(pki_dir)
    cert_path, key_path = out_dir / f"{name}.pem", out_dir / f"{name}-key.pem"
    issued = not _kit_is_current(ca_cert, cert_path, key_path, name, role)
    if issued:
        if role is Role.SERVER:
            issue_server_certificate(pki_dir, name, dns_names, ip_addresses, valid_days, out_dir)
        else:
            issue_client_certificate(pki_dir, name, role, valid_days, out_dir)
    return _finish_kit(ca_cert, out_dir, name, role, url, mount, key_path, issued)


def issue_kit_from_request(
    pki_dir: Path,
    out_dir: Path,
    csr_path: Path,
    role: Role = Role.NODE,
    *,
    aggregator_url: str | None = None,
    mount: str = KIT_MOUNT,
    valid_days: int = 825,
) -> IssuedKit:
    """Sign a hospital's request into a kit without a key: the key stays where it was made."""
    url = _kit_url(role, aggregator_url)
    _check_kit_folder(pki_dir, out_dir)
    ca_cert, _ = _load_ca(pki_dir)
    staged = out_dir / f".request-{secrets.token_hex(8)}.pem"
    try:
        sign_request(pki_dir, csr_path, role, staged, valid_days)
        name = identity_from_certificate(load_certificate(staged)).name
        if (out_dir / f"{name}-key.pem").exists():
            raise PKIError(
                f"{out_dir} holds a private key for {name}, which this certificate does not "
                f"match; a kit signed from a request carries no key, so use an empty folder"
            )
        staged.replace(out_dir / f"{name}.pem")
    finally:
        staged.unlink(missing_ok=True)
    return _finish_kit(ca_cert, out_dir, name, role, url, mount, None, True)


def _kit_url(role: Role, aggregator_url: str | None) -> str | None:
    if role is Role.SERVER:
        return None
    if aggregator_url is None:
        raise PKIError(f"a {role} kit needs the aggregator's URL (https://host:port)")
    return _check_https(aggregator_url)


def _check_https(url: str) -> str:
    if not url.startswith("https://") or len(url) <= len("https://"):
        raise PKIError(f"the aggregator URL must start with https://, got {url!r}")
    return url.rstrip("/")


def _check_kit_folder(pki_dir: Path, out_dir: Path) -> None:
    if out_dir.resolve() == pki_dir.resolve() or (out_dir / CA_PRIVATE_KEY).exists():
        raise PKIError(
            f"{out_dir} holds (or is) the CA's folder; a kit goes to a folder of its own, "
            f"so the CA's private key never travels with it"
        )
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)


def _kit_is_current(
    ca: x509.Certificate, cert_path: Path, key_path: Path, name: str, role: Role
) -> bool:
    if not cert_path.exists() and not key_path.exists():
        return False
    if not (cert_path.exists() and key_path.exists()):
        raise PKIError(f"only one of {cert_path} and {key_path} exists; remove it to reissue")
    cert = load_certificate(cert_path)
    check_issued_by(cert, cert_path, ca)
    holder = identity_from_certificate(cert)
    if (holder.name, holder.role) != (name, role):
        raise PKIError(
            f"{cert_path} belongs to {holder.name} ({holder.role}), not {name} ({role}); "
            f"remove it to reissue"
        )
    return cert.not_valid_after_utc > datetime.now(UTC)


def _finish_kit(
    ca: x509.Certificate,
    out_dir: Path,
    name: str,
    role: Role,
    url: str | None,
    mount: str,
    key_path: Path | None,
    issued: bool,
) -> IssuedKit:
    ca_path = out_dir / CA_CERTIFICATE
    _write_atomic(ca_path, ca.public_bytes(serialization.Encoding.PEM), _CERT_MODE)
    env_path = out_dir / KIT_ENV_FILES[role]
    _write_atomic(env_path, _kit_env(name, role, url, mount.rstrip("/")).encode(), _CERT_MODE)
    cert_path = out_dir / f"{name}.pem"
    return IssuedKit(out_dir, name, role, cert_path, key_path, ca_path, env_path, issued)


def _kit_env(name: str, role: Role, url: str | None, mount: str) -> str:
    files = {"CA": f"{mount}/ca.pem", "CERT": f"{mount}/{name}.pem"}
    files["KEY"] = f"{mount}/{name}-key.pem"
    if role is Role.ADMIN:
        lines = [f"FEDSEG_ADMIN_URL={url}"] + [f"FEDSEG_ADMIN_{k}={v}" for k, v in files.items()]
    else:
        lines = [f"FEDSEG_AGGREGATOR_URL={url}"] if role is Role.NODE else ["FEDSEG_HOST=0.0.0.0"]
        lines += [f"FEDSEG_TLS_{k}={v}" for k, v in files.items()]
        lines.append("FEDSEG_STATE_DIR=/var/lib/fedseg")
    if role is Role.NODE:
        lines.append("FEDSEG_DATA_DIR=/data")
    header = [
        f"# fedseg {role} settings for {name} (KEY=value, for docker --env-file).",
        f"# Paths are where this kit is mounted ({mount}); no line here is secret.",
    ]
    return "\n".join(header + lines) + "\n"
