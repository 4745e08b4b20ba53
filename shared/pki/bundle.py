"""PKCS#12 bundles (RFC 7292): a holder's certificate and key, for a browser's store.

An operator who opens the aggregator's dashboard directly needs the client certificate in
the browser; browsers and OS certificate stores import PKCS#12, not PEM pairs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from shared.errors import PKIError
from shared.identity import CLIENT_ROLES, Identity, identity_from_certificate
from shared.pki.ca import load_certificate
from shared.pki.files import _KEY_MODE, _read, _write_atomic

MIN_PASSPHRASE = 8
"""Characters a bundle's passphrase needs at least: the file holds a private key."""
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
_BUNDLED_KEYS = (
    rsa.RSAPrivateKey,
    dsa.DSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
)


def export_pkcs12(
    cert_path: Path,
    key_path: Path,
    out: Path,
    passphrase: Callable[[], bytes],
    ca_path: Path | None = None,
    legacy: bool = False,
) -> Identity:
    """Write ``out`` (mode 0600, never over an existing file); the holder it is for.

    ``passphrase`` is asked for only once every file has been checked. The bundle is
    encrypted with AES-256-CBC and PBKDF2-HMAC-SHA256, or with ``legacy`` 3DES and SHA-1,
    which older macOS and Windows certificate stores need.
    """
    cert = load_certificate(cert_path)
    holder = identity_from_certificate(cert)
    if holder.role not in CLIENT_ROLES:
        raise PKIError(f"{cert_path} is a {holder.role} certificate; export a node or admin one")
    key = _private_key(key_path)
    if key.public_key().public_bytes(*_SPKI) != cert.public_key().public_bytes(*_SPKI):
        raise PKIError(f"{key_path} is not the private key of {cert_path}")
    cas = [load_certificate(ca_path)] if ca_path is not None else None
    if out.exists():
        raise PKIError(f"{out} already exists; remove it or choose another --out")
    secret = passphrase()
    if len(secret) < MIN_PASSPHRASE:
        raise PKIError(f"the passphrase needs at least {MIN_PASSPHRASE} characters")
    builder = serialization.PrivateFormat.PKCS12.encryption_builder()
    if legacy:
        builder = builder.kdf_rounds(50_000).hmac_hash(hashes.SHA1())  # noqa: S303
        builder = builder.key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
    else:
        builder = builder.kdf_rounds(200_000).hmac_hash(hashes.SHA256())
        builder = builder.key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
    data = pkcs12.serialize_key_and_certificates(
        holder.name.encode(), key, cert, cas, builder.build(secret)
    )
    _write_atomic(out, data, _KEY_MODE)
    return holder


def _private_key(path: Path) -> pkcs12.PKCS12PrivateKeyTypes:
    try:
        key = serialization.load_pem_private_key(_read(path, "private key"), password=None)
    except (ValueError, TypeError):
        raise PKIError(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, _BUNDLED_KEYS):
        raise PKIError(f"{path} holds a key type PKCS#12 cannot carry")
    return key
