"""Leaf certificates from the CA: server and client certificates, and the CSR flow."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared.errors import PKIError
from shared.identity import Role
from shared.pki.ca import _load_ca
from shared.pki.fields import _builder, _key_pem, _key_usage, _subject, _Validity, _validity
from shared.pki.files import _CERT_MODE, _KEY_MODE, _check_name, _read, _write_atomic

DEFAULT_DNS_NAMES = ("localhost",)
DEFAULT_IP_ADDRESSES = ("127.0.0.1",)


@dataclass(frozen=True)
class CertificatePaths:
    """Where an issued certificate and its private key were written."""

    certificate: Path
    private_key: Path


@dataclass(frozen=True)
class SigningRequestPaths:
    """Where a hospital's private key and its certificate signing request were written."""

    private_key: Path
    request: Path


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


def _acceptable_key(key: object) -> bool:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return isinstance(key.curve, ec.SECP256R1 | ec.SECP384R1)
    return isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048


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


def _check_peer_role(role: Role) -> None:
    if role not in (Role.NODE, Role.ADMIN):
        raise PKIError(f"a client certificate's role must be node or admin, got {str(role)!r}")
