"""Who a certificate says its holder is: CN is the name, OU is the role (DESIGN 3.1)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared.errors import PKIError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
"""What a node or admin name may look like: it appears in paths, file names and the CN."""

LABEL_PATTERN = r"^[\x20-\x7e]{1,64}$"
"""What a revocation may record as the holder: any printable ASCII common name, so that a
certificate the CA signed with a name fedseg refuses (and so never served) can still be
revoked by its serial."""


def is_valid_name(name: str) -> bool:
    return re.fullmatch(NAME_PATTERN, name) is not None


def common_name(cert: x509.Certificate) -> str:
    """The certificate's CN as a printable label for the record, however odd it is."""
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    text = str(values[0].value) if values else ""
    label = "".join(c if " " <= c <= "~" else "?" for c in text)[:64]
    return label or "(no common name)"


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


CLIENT_ROLES = frozenset({Role.NODE, Role.ADMIN})
"""The roles that may call the aggregator; a server certificate only answers."""


def client_identity(cert: x509.Certificate) -> Identity:
    """The identity of a client certificate, checked as the federation CA issues them.

    Beyond the TLS layer's chain check: the role is a client role (node or admin), the
    certificate allows TLS client authentication (extended key usage clientAuth), and the
    name follows the rule fedseg-pki applies (it is used in paths and file names).
    """
    identity = identity_from_certificate(cert)
    if identity.role not in CLIENT_ROLES:
        raise PKIError(
            f"certificate of {identity.name[:64]!r} has role {identity.role}, which cannot act "
            "as a client: only node and admin certificates may call the aggregator"
        )
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is None or ExtendedKeyUsageOID.CLIENT_AUTH not in usage:
        raise PKIError(
            f"certificate of {identity.name[:64]!r} does not allow TLS client authentication "
            "(no clientAuth extended key usage); issue it with fedseg-pki"
        )
    if not is_valid_name(identity.name):
        raise PKIError(
            f"certificate common name {identity.name[:64]!r} is not a valid fedseg name "
            "(letters, digits, '.', '_' and '-', at most 63, starting with a letter or digit)"
        )
    return identity


def identity_from_der(der: bytes) -> Identity:
    """A client's identity from its DER certificate (``getpeercert(binary_form=True)``)."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise PKIError(f"peer certificate is not valid DER: {exc}") from exc
    return client_identity(cert)
