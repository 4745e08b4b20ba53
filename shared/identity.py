"""Who a certificate says its holder is: CN is the name, OU is the role (DESIGN 3.1)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from cryptography import x509
from cryptography.x509.oid import NameOID

from shared.errors import PKIError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
"""What a node or admin name may look like: it appears in paths, file names and the CN."""


class Role(StrEnum):
    """The role the federation CA writes into a certificate's OU."""

    NODE = "node"
    ADMIN = "admin"
    SERVER = "server"


@dataclass(frozen=True)
class Identity:
    """The verified holder of a client certificate."""

    name: str
    role: Role
    serial: int


def _single(cert: x509.Certificate, oid: x509.ObjectIdentifier, what: str) -> str:
    values = cert.subject.get_attributes_for_oid(oid)
    if len(values) != 1:
        raise PKIError(f"certificate subject must have exactly one {what}, found {len(values)}")
    value = values[0].value
    if not isinstance(value, str) or not value:
        raise PKIError(f"certificate {what} must be a non-empty string")
    return value


def identity_from_certificate(cert: x509.Certificate) -> Identity:
    """Read (CN, OU) of a certificate the TLS layer has already verified."""
    name = _single(cert, NameOID.COMMON_NAME, "common name (CN)")
    role_text = _single(cert, NameOID.ORGANIZATIONAL_UNIT_NAME, "role (OU)")
    try:
        role = Role(role_text)
    except ValueError:
        raise PKIError(
            f"certificate role (OU) {role_text!r} is not one of node, admin, server"
        ) from None
    return Identity(name=name, role=role, serial=cert.serial_number)


def identity_from_der(der: bytes) -> Identity:
    """Parse a DER certificate (as ``SSLObject.getpeercert(binary_form=True)`` returns)."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise PKIError(f"peer certificate is not valid DER: {exc}") from exc
    return identity_from_certificate(cert)
