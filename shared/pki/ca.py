"""The federation CA: creating and loading it, and checking what it signed (DESIGN 3.1)."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from shared.errors import PKIError
from shared.pki.fields import _builder, _key_pem, _key_usage, _validity
from shared.pki.files import _CERT_MODE, _KEY_MODE, _read, _write_atomic

CA_CERTIFICATE = "ca.pem"
CA_PRIVATE_KEY = "ca-key.pem"

_IssuerKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


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


def load_certificate(path: Path) -> x509.Certificate:
    """Read a PEM certificate, with a clear error naming the file when it cannot be."""
    try:
        return x509.load_pem_x509_certificate(_read(path, "certificate"))
    except ValueError:
        raise PKIError(f"{path} is not a PEM certificate") from None


def check_issued_by(cert: x509.Certificate, cert_path: Path, ca: x509.Certificate) -> None:
    """Raise unless ``ca`` signed ``cert`` (read from ``cert_path``, named in the error)."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise PKIError(
            f"{cert_path} was not issued by the federation CA ({ca.subject.rfc4514_string()})"
        ) from None


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
