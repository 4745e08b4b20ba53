"""The CA's certificate revocation list: issuing, re-signing and revoking (RFC 5280 §5)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from shared.errors import PKIError
from shared.identity import Identity, identity_from_certificate
from shared.pki.ca import CA_CERTIFICATE, _load_ca, check_issued_by, load_certificate
from shared.pki.fields import _validity
from shared.pki.files import _CERT_MODE, _read, _write_atomic

CRL_FILE = "crl.pem"
CRL_VALID_DAYS = 365
"""How long a CRL is valid; re-sign it (`fedseg-pki crl`) before then, or TLS refuses everyone."""


@dataclass(frozen=True)
class RevocationList:
    """The CA's certificate revocation list as written to ``path``."""

    path: Path
    serials: tuple[int, ...]
    number: int
    next_update: datetime


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
