"""The federation's PKI: one CA issuing certificates, hospital kits and a CRL (DESIGN 3.1)."""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared.errors import PKIError
from shared.identity import NAME_PATTERN, Identity, Role, identity_from_certificate

CA_CERTIFICATE = "ca.pem"
CA_PRIVATE_KEY = "ca-key.pem"
CRL_FILE = "crl.pem"
CRL_VALID_DAYS = 365
"""How long a CRL is valid; re-sign it (`fedseg-pki crl`) before then, or TLS refuses everyone."""
KIT_MOUNT = "/kit"
"""Where a kit folder is mounted in the container that uses it; its env file names paths there."""
KIT_ENV_FILES = {"node": "node.env", "admin": "admin.env", "server": "aggregator.env"}
DEFAULT_DNS_NAMES = ("localhost",)
DEFAULT_IP_ADDRESSES = ("127.0.0.1",)
CLOCK_SKEW = timedelta(minutes=5)
"""How far ``not_valid_before`` is backdated, so a peer whose clock runs slow still accepts."""

_KEY_MODE = 0o600
_CERT_MODE = 0o644
_Validity = tuple[datetime, datetime]
_IssuerKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class CertificatePaths:
    """Where an issued certificate and its private key were written."""

    certificate: Path
    private_key: Path


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


@dataclass(frozen=True)
class RevocationList:
    """The CA's certificate revocation list as written to ``path``."""

    path: Path
    serials: tuple[int, ...]
    number: int
    next_update: datetime


@dataclass(frozen=True)
class SigningRequestPaths:
    """Where a hospital's private key and its certificate signing request were written."""

    private_key: Path
    request: Path


def create_ca(
    pki_dir: Path, common_name: str = "fedseg federation CA", valid_days: int = 3650
) -> Path:
    """Create the federation CA in ``pki_dir``, or keep the one already there; return ca.pem."""
    cert_path, key_path = pki_dir / CA_CERTIFICATE, pki_dir / CA_PRIVATE_KEY
    if cert_path.exists() and key_path.exists():
        return cert_path
    if cert_path.exists() or key_path.exists():
        present, missing = (cert_path, key_path) if cert_path.exists() else (key_path, cert_path)
        raise PKIError(
            f"{present} exists but {missing} does not; restore the missing file, or remove both "
            f"to create a new CA (every certificate the old one issued then stops working)"
        )
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        _builder(name, name, key.public_key(), _validity(valid_days))
        # pathlen 0: the CA signs leaves only, so no leaf key can ever mint certificates.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    _write_atomic(key_path, _key_pem(key), _KEY_MODE)
    _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), _CERT_MODE)
    return cert_path


def issue_server_certificate(
    pki_dir: Path,
    name: str = "aggregator",
    dns_names: Sequence[str] = DEFAULT_DNS_NAMES,
    ip_addresses: Sequence[str] = DEFAULT_IP_ADDRESSES,
    valid_days: int = 825,
    out_dir: Path | None = None,
) -> CertificatePaths:
    """Issue the aggregator's TLS server certificate (OU=server, EKU serverAuth, SANs)."""
    _check_name(name)
    sans = _subject_alternative_names(dns_names, ip_addresses)
    usage = ExtendedKeyUsageOID.SERVER_AUTH
    return _issue_with_new_key(
        pki_dir, out_dir, name, Role.SERVER, usage, _validity(valid_days), sans
    )


def issue_client_certificate(
    pki_dir: Path,
    name: str,
    role: Role,
    valid_days: int = 825,
    out_dir: Path | None = None,
    not_valid_before: datetime | None = None,
    not_valid_after: datetime | None = None,
) -> CertificatePaths:
    """Issue a node or admin client certificate and its key; the datetimes override validity."""
    _check_name(name)
    _check_peer_role(role)
    validity = _validity(valid_days, not_valid_before, not_valid_after)
    usage = ExtendedKeyUsageOID.CLIENT_AUTH
    return _issue_with_new_key(pki_dir, out_dir, name, role, usage, validity, None)


def create_signing_request(out_dir: Path, name: str, role: Role) -> SigningRequestPaths:
    """Hospital side: make a private key and a CSR (CN=name, OU=role) in ``out_dir``."""
    _check_name(name)
    _check_peer_role(role)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(_subject(name, role))
    paths = SigningRequestPaths(out_dir / f"{name}-key.pem", out_dir / f"{name}.csr")
    _write_atomic(paths.private_key, _key_pem(key), _KEY_MODE)
    pem = csr.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    _write_atomic(paths.request, pem, _CERT_MODE)
    return paths


def sign_request(
    pki_dir: Path, csr_path: Path, role: Role, out_path: Path, valid_days: int = 825
) -> Path:
    """CA side: check a hospital's CSR and issue its client certificate; return ``out_path``."""
    _check_peer_role(role)
    try:
        csr = x509.load_pem_x509_csr(_read(csr_path, "certificate signing request"))
    except ValueError:
        raise PKIError(f"{csr_path} is not a PEM certificate signing request") from None
    if not csr.is_signature_valid:
        raise PKIError(f"the signature of {csr_path} does not match its public key")
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or not isinstance(names[0].value, str):
        raise PKIError(f"{csr_path} must name its holder in exactly one common name (CN)")
    _check_name(names[0].value)
    units = [u.value for u in csr.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
    if units and units != [str(role)]:
        raise PKIError(
            f"{csr_path} asks for role (OU) {', '.join(map(str, units))}, "
            f"but it is being signed as {role}"
        )
    public_key = csr.public_key()
    if not _acceptable_key(public_key):
        raise PKIError(f"{csr_path} must carry an EC P-256/P-384 or RSA (>= 2048 bit) public key")
    # Only the CN and the public key are taken from the request: extensions it asks for (SANs,
    # CA flag, usages) are ignored, so a hospital cannot widen what its certificate may do.
    subject, usage = _subject(names[0].value, role), ExtendedKeyUsageOID.CLIENT_AUTH
    cert = _issue(pki_dir, subject, public_key, usage, _validity(valid_days), None)
    _write_atomic(out_path, cert.public_bytes(serialization.Encoding.PEM), _CERT_MODE)
    return out_path


def bootstrap(
    pki_dir: Path,
    nodes: Sequence[str],
    admins: Sequence[str] = ("admin",),
    server_name: str = "aggregator",
    dns_names: Sequence[str] = DEFAULT_DNS_NAMES,
    ip_addresses: Sequence[str] = DEFAULT_IP_ADDRESSES,
    kits_dir: Path | None = None,
    aggregator_url: str | None = None,
) -> None:
    """Create whichever of the CA, server, node and admin credentials is missing; keep the rest.

    With ``kits_dir`` every holder gets a kit folder ``kits_dir/<name>`` (see ``issue_kit``)
    instead of files beside the CA, so the CA folder can stay with the CA operator.
    """
    if kits_dir is not None and aggregator_url is None:
        raise PKIError("kits for nodes and admins need the aggregator's https:// URL")
    wanted = [(server_name, Role.SERVER)] + [(n, Role.NODE) for n in nodes]
    wanted += [(a, Role.ADMIN) for a in admins]
    seen: set[str] = set()
    for name, _ in wanted:  # validate all first, so a typo leaves no half-made folder
        _check_name(name)
        if name in seen:
            raise PKIError(f"the name {name!r} is given twice; each holder needs its own name")
        seen.add(name)
    if aggregator_url is not None:
        _check_https(aggregator_url)
    create_ca(pki_dir)
    if kits_dir is not None:
        for name, role in wanted:
            issue_kit(
                pki_dir, kits_dir / name, name, role, aggregator_url=aggregator_url,
                dns_names=dns_names, ip_addresses=ip_addresses,
            )  # fmt: skip
        return
    for name, role in wanted:
        cert_path, key_path = pki_dir / f"{name}.pem", pki_dir / f"{name}-key.pem"
        if cert_path.exists() and key_path.exists():
            existing = identity_from_certificate(load_certificate(cert_path)).role
            if existing != role:
                raise PKIError(f"{cert_path} has role {existing}, but bootstrap asks for {role}")
        elif cert_path.exists() or key_path.exists():
            raise PKIError(f"only one of {cert_path} and {key_path} exists; remove it to reissue")
        elif role is Role.SERVER:
            issue_server_certificate(pki_dir, name, dns_names, ip_addresses)
        else:
            issue_client_certificate(pki_dir, name, role)


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


def issue_crl(pki_dir: Path, valid_days: int = CRL_VALID_DAYS) -> RevocationList:
    """Create the CA's CRL (``crl.pem``), or re-sign it with the same entries and a new date."""
    return _write_crl(pki_dir, None, None, valid_days)


def revoke(
    pki_dir: Path,
    serial: int,
    reason: x509.ReasonFlags | None = None,
    valid_days: int = CRL_VALID_DAYS,
) -> RevocationList:
    """Add ``serial`` to the CA's CRL (created if missing); revoking it twice changes nothing."""
    if serial < 1:
        raise PKIError(f"a certificate serial number is positive, got {serial}")
    return _write_crl(pki_dir, serial, reason, valid_days)


def revoke_certificate(
    pki_dir: Path,
    cert_path: Path,
    reason: x509.ReasonFlags | None = None,
    valid_days: int = CRL_VALID_DAYS,
) -> tuple[Identity, RevocationList]:
    """Revoke the certificate in ``cert_path``, after checking that this CA issued it."""
    cert = load_certificate(cert_path)
    check_issued_by(cert, cert_path, load_certificate(pki_dir / CA_CERTIFICATE))
    return identity_from_certificate(cert), revoke(pki_dir, cert.serial_number, reason, valid_days)


def load_crl(path: Path) -> x509.CertificateRevocationList:
    """Read a PEM CRL, with a clear error naming the file when it cannot be."""
    try:
        return x509.load_pem_x509_crl(_read(path, "certificate revocation list"))
    except ValueError:
        raise PKIError(f"{path} is not a PEM certificate revocation list") from None


def check_issued_by(cert: x509.Certificate, cert_path: Path, ca: x509.Certificate) -> None:
    """Raise unless ``ca`` signed ``cert`` (read from ``cert_path``, named in the error)."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise PKIError(
            f"{cert_path} was not issued by the federation CA ({ca.subject.rfc4514_string()})"
        ) from None


def load_certificate(path: Path) -> x509.Certificate:
    """Read a PEM certificate, with a clear error naming the file when it cannot be."""
    try:
        return x509.load_pem_x509_certificate(_read(path, "certificate"))
    except ValueError:
        raise PKIError(f"{path} is not a PEM certificate") from None


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


def _write_crl(
    pki_dir: Path, serial: int | None, reason: x509.ReasonFlags | None, valid_days: int
) -> RevocationList:
    ca_cert, ca_key = _load_ca(pki_dir)
    path = pki_dir / CRL_FILE
    entries: list[x509.RevokedCertificate] = []
    number = 1
    if path.exists():
        old = load_crl(path)
        if old.issuer != ca_cert.subject or not old.is_signature_valid(ca_key.public_key()):
            raise PKIError(f"{path} was not signed by the CA in {pki_dir}; move it away first")
        entries = list(old)
        number = old.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
    start, end = _validity(valid_days)
    if serial is not None and all(e.serial_number != serial for e in entries):
        entry = x509.RevokedCertificateBuilder().serial_number(serial)
        entry = entry.revocation_date(datetime.now(UTC))
        if reason is not None:
            entry = entry.add_extension(x509.CRLReason(reason), critical=False)
        entries.append(entry.build())
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(start)
        .next_update(end)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    for revoked in entries:
        builder = builder.add_revoked_certificate(revoked)
    crl = builder.sign(ca_key, hashes.SHA256())
    _write_atomic(path, crl.public_bytes(serialization.Encoding.PEM), _CERT_MODE)
    written_end = crl.next_update_utc or end  # whole seconds, as the file holds it
    return RevocationList(path, tuple(e.serial_number for e in entries), number, written_end)


def _issue_with_new_key(
    pki_dir: Path,
    out_dir: Path | None,
    name: str,
    role: Role,
    usage: x509.ObjectIdentifier,
    validity: _Validity,
    sans: x509.SubjectAlternativeName | None,
) -> CertificatePaths:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _issue(pki_dir, _subject(name, role), key.public_key(), usage, validity, sans)
    folder = out_dir or pki_dir
    paths = CertificatePaths(folder / f"{name}.pem", folder / f"{name}-key.pem")
    _write_atomic(paths.private_key, _key_pem(key), _KEY_MODE)
    _write_atomic(paths.certificate, cert.public_bytes(serialization.Encoding.PEM), _CERT_MODE)
    return paths


def _issue(
    pki_dir: Path,
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    usage: x509.ObjectIdentifier,
    validity: _Validity,
    sans: x509.SubjectAlternativeName | None,
) -> x509.Certificate:
    ca_cert, ca_key = _load_ca(pki_dir)
    builder = (
        _builder(subject, ca_cert.subject, public_key, validity)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    if sans is not None:
        builder = builder.add_extension(sans, critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: CertificatePublicKeyTypes,
    validity: _Validity,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _load_ca(pki_dir: Path) -> tuple[x509.Certificate, _IssuerKey]:
    cert_path, key_path = pki_dir / CA_CERTIFICATE, pki_dir / CA_PRIVATE_KEY
    if not cert_path.exists():
        raise PKIError(
            f"{pki_dir} holds no CA ({cert_path} is missing); run `fedseg-pki init` first"
        )
    cert = load_certificate(cert_path)
    try:
        key = serialization.load_pem_private_key(_read(key_path, "CA private key"), None)
    except (ValueError, TypeError):
        raise PKIError(f"{key_path} is not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise PKIError(f"{key_path} must hold an EC or RSA private key")
    if key.public_key() != cert.public_key():
        raise PKIError(f"{key_path} is not the private key of {cert_path}")
    return cert, key


def _acceptable_key(key: object) -> bool:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return isinstance(key.curve, ec.SECP256R1 | ec.SECP384R1)
    return isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048


def _subject(name: str, role: Role) -> x509.Name:
    cn = x509.NameAttribute(NameOID.COMMON_NAME, name)
    return x509.Name([cn, x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, str(role))])


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    # Leaves hold EC keys, which only sign (ECDSA in the handshake): keyEncipherment is RSA-only.
    flags = dict.fromkeys(("content_commitment", "key_encipherment", "data_encipherment"), False)
    flags |= dict.fromkeys(("key_agreement", "encipher_only", "decipher_only"), False)
    return x509.KeyUsage(
        digital_signature=not cert_sign, key_cert_sign=cert_sign, crl_sign=cert_sign, **flags
    )


def _subject_alternative_names(
    dns_names: Sequence[str], ip_addresses: Sequence[str]
) -> x509.SubjectAlternativeName:
    if not dns_names and not ip_addresses:
        raise PKIError("a server certificate needs at least one DNS name or IP address")
    entries: list[x509.GeneralName] = []
    for dns in dns_names:
        if not dns or not dns.isascii():
            raise PKIError(f"DNS name {dns!r} must be non-empty ASCII (use the IDNA A-label)")
        entries.append(x509.DNSName(dns))
    for ip in ip_addresses:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError:
            raise PKIError(f"{ip!r} is not an IPv4 or IPv6 address") from None
    return x509.SubjectAlternativeName(entries)


def _validity(
    valid_days: int, not_before: datetime | None = None, not_after: datetime | None = None
) -> _Validity:
    if valid_days < 1:
        raise PKIError(f"valid_days must be at least 1, got {valid_days}")
    now = datetime.now(UTC)
    start = now - CLOCK_SKEW if not_before is None else not_before
    end = now + timedelta(days=valid_days) if not_after is None else not_after
    for label, moment in (("not_valid_before", start), ("not_valid_after", end)):
        if moment.tzinfo is None:
            raise PKIError(f"{label} must be timezone-aware, got {moment.isoformat()}")
    if end <= start:
        raise PKIError(f"not_valid_after ({end.isoformat()}) must follow not_valid_before")
    return start, end


def _check_name(name: str) -> None:
    # fullmatch, not match: "$" would also let a trailing newline into a file name or CN.
    if re.fullmatch(NAME_PATTERN, name) is None:
        raise PKIError(
            f"name {name!r} is not allowed: use 1-63 letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit"
        )


def _check_peer_role(role: Role) -> None:
    if role not in (Role.NODE, Role.ADMIN):
        raise PKIError(f"a client certificate's role must be node or admin, got {str(role)!r}")


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    # Unencrypted because services start unattended; the 0600 file mode is what protects it.
    fmt, none = serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, fmt, none)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise PKIError(f"{what} file {path} does not exist") from None
    except OSError as exc:
        raise PKIError(f"{what} file {path} cannot be read: {exc.strerror}") from None


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write via a same-folder temp file and rename, so no reader ever sees a partial file."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The final mode is given at creation, before any byte is written: a key is never
        # readable by others, not even for an instant. O_EXCL refuses a planted symlink.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)  # a strict umask must not hide a certificate
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # so the rename itself survives a crash
        finally:
            os.close(dir_fd)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise PKIError(f"cannot write {path}: {exc.strerror or exc}") from None
