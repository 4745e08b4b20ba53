"""X.509 pieces the CA and its leaves share: validity, builder, key usage, subject, key PEM."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID

from shared.errors import PKIError
from shared.identity import Role

CLOCK_SKEW = timedelta(minutes=5)
"""How far ``not_valid_before`` is backdated, so a peer whose clock runs slow still accepts."""

_Validity = tuple[datetime, datetime]


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


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    # Leaves hold EC keys, which only sign (ECDSA in the handshake): keyEncipherment is RSA-only.
    flags = dict.fromkeys(("content_commitment", "key_encipherment", "data_encipherment"), False)
    flags |= dict.fromkeys(("key_agreement", "encipher_only", "decipher_only"), False)
    return x509.KeyUsage(
        digital_signature=not cert_sign, key_cert_sign=cert_sign, crl_sign=cert_sign, **flags
    )


def _subject(name: str, role: Role) -> x509.Name:
    cn = x509.NameAttribute(NameOID.COMMON_NAME, name)
    return x509.Name([cn, x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, str(role))])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    # Unencrypted because services start unattended; the 0600 file mode is what protects it.
    fmt, none = serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, fmt, none)
