"""Tests for shared.pki: modes, certificate fields, CSR flow, kits, bootstrap, CRL, real TLS."""

from __future__ import annotations

import base64
import os
import re
import socket
import ssl
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared import pki
from shared.errors import PKIError
from shared.identity import Identity, Role, identity_from_certificate, identity_from_der
from shared.tls import server_ssl_context


@pytest.fixture
def pki_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "pki"
    pki.create_ca(folder)
    return folder


_E = TypeVar("_E", bound=x509.ExtensionType)


def _ext(cert: x509.Certificate, kind: type[_E]) -> x509.Extension[_E]:
    return cert.extensions.get_extension_for_class(kind)


def _starting(text: str) -> str:
    return "^" + re.escape(text)


def _exactly(text: str) -> str:
    return "^" + re.escape(text) + "$"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _csr_pem(subject: x509.Name, *extensions: x509.ExtensionType) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    csr = builder.sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def _name(**attributes: str) -> x509.Name:
    oids = {"cn": NameOID.COMMON_NAME, "ou": NameOID.ORGANIZATIONAL_UNIT_NAME}
    return x509.Name([x509.NameAttribute(oids[k], v) for k, v in attributes.items()])


def test_create_ca_writes_a_constrained_self_signed_ca(pki_dir: Path) -> None:
    ca = pki.load_certificate(pki_dir / "ca.pem")
    constraints = _ext(ca, x509.BasicConstraints)
    usage = _ext(ca, x509.KeyUsage).value
    ski = _ext(ca, x509.SubjectKeyIdentifier).value
    assert constraints.critical
    assert (constraints.value.ca, constraints.value.path_length) == (True, 0)
    assert (usage.key_cert_sign, usage.crl_sign, usage.digital_signature) == (True, True, False)
    assert _ext(ca, x509.AuthorityKeyIdentifier).value.key_identifier == ski.digest
    assert ca.subject.rfc4514_string() == "CN=fedseg federation CA"
    ca.verify_directly_issued_by(ca)


def test_create_ca_is_idempotent_and_keeps_the_same_bytes(pki_dir: Path) -> None:
    before = {p.name: p.read_bytes() for p in pki_dir.iterdir()}
    assert pki.create_ca(pki_dir) == pki_dir / "ca.pem"
    assert {p.name: p.read_bytes() for p in pki_dir.iterdir()} == before


def test_create_ca_refuses_a_half_present_ca(pki_dir: Path) -> None:
    (pki_dir / "ca-key.pem").unlink()
    with pytest.raises(
        PKIError, match=_starting(f"{pki_dir}/ca.pem exists but {pki_dir}/ca-key.pem does")
    ):
        pki.create_ca(pki_dir)


def test_keys_are_0600_and_certificates_0644_even_with_an_open_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        pki.create_ca(tmp_path)
        server = pki.issue_server_certificate(tmp_path)
        client = pki.issue_client_certificate(tmp_path, "site-1", Role.NODE)
        request = pki.create_signing_request(tmp_path / "hospital", "site-2", Role.NODE)
    finally:
        os.umask(old)
    keys = [tmp_path / "ca-key.pem", server.private_key, client.private_key, request.private_key]
    public = [tmp_path / "ca.pem", server.certificate, client.certificate, request.request]
    assert [_mode(p) for p in keys] == [0o600] * 4
    assert [_mode(p) for p in public] == [0o644] * 4
    assert not [p for p in tmp_path.rglob(".*.tmp")]


def test_keys_are_unencrypted_pkcs8_p256(pki_dir: Path) -> None:
    paths = pki.issue_client_certificate(pki_dir, "site-1", Role.NODE)
    pem = paths.private_key.read_bytes()
    key = serialization.load_pem_private_key(pem, None)
    assert pem.startswith(b"-----BEGIN " + b"PRIVATE KEY-----")  # split: no key literal in the repo
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    assert key.public_key() == pki.load_certificate(paths.certificate).public_key()


def test_server_certificate_fields(pki_dir: Path) -> None:
    paths = pki.issue_server_certificate(
        pki_dir, dns_names=["localhost", "agg.example"], ip_addresses=["127.0.0.1", "::1"]
    )
    cert = pki.load_certificate(paths.certificate)
    ca = pki.load_certificate(pki_dir / "ca.pem")
    sans = _ext(cert, x509.SubjectAlternativeName).value
    assert paths == pki.CertificatePaths(pki_dir / "aggregator.pem", pki_dir / "aggregator-key.pem")
    assert identity_from_certificate(cert) == Identity(
        "aggregator", Role.SERVER, cert.serial_number
    )
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert sans.get_values_for_type(x509.DNSName) == ["localhost", "agg.example"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    assert _ext(cert, x509.BasicConstraints).value.ca is False
    assert _ext(cert, x509.KeyUsage).value.digital_signature is True
    aki = _ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier
    assert aki == _ext(ca, x509.SubjectKeyIdentifier).value.digest
    cert.verify_directly_issued_by(ca)


@pytest.mark.parametrize("role", [Role.NODE, Role.ADMIN])
def test_client_certificate_fields_and_identity_round_trip(pki_dir: Path, role: Role) -> None:
    before = datetime.now(UTC)
    paths = pki.issue_client_certificate(pki_dir, "site-1", role, valid_days=30)
    cert = pki.load_certificate(paths.certificate)
    assert identity_from_certificate(cert) == Identity("site-1", role, cert.serial_number)
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert _ext(cert, x509.BasicConstraints).value.ca is False
    with pytest.raises(x509.ExtensionNotFound):
        _ext(cert, x509.SubjectAlternativeName)
    skew = before - cert.not_valid_before_utc
    # Certificates store whole seconds, so the backdating can read up to a second longer.
    assert timedelta(minutes=5) <= skew < timedelta(minutes=5, seconds=2)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=30, minutes=5)
    cert.verify_directly_issued_by(pki.load_certificate(pki_dir / "ca.pem"))


def test_client_certificate_goes_to_out_dir(pki_dir: Path, tmp_path: Path) -> None:
    paths = pki.issue_client_certificate(pki_dir, "admin", Role.ADMIN, out_dir=tmp_path / "out")
    assert paths == pki.CertificatePaths(tmp_path / "out/admin.pem", tmp_path / "out/admin-key.pem")
    assert not (pki_dir / "admin.pem").exists()


def test_client_certificate_refuses_the_server_role(pki_dir: Path) -> None:
    with pytest.raises(
        PKIError, match=_exactly("a client certificate's role must be node or admin, got 'server'")
    ):
        pki.issue_client_certificate(pki_dir, "site-1", Role.SERVER)


@pytest.mark.parametrize("name", ["", "../evil", "site 1", "-site", "a" * 64, "site-1\n", "é"])
def test_bad_names_are_refused(pki_dir: Path, name: str) -> None:
    message = "^" + re.escape(f"name {name!r} is not allowed: use 1-63 letters")
    with pytest.raises(PKIError, match=message):
        pki.issue_client_certificate(pki_dir, name, Role.NODE)
    with pytest.raises(PKIError, match=message):
        pki.create_signing_request(pki_dir, name, Role.NODE)
    assert sorted(p.name for p in pki_dir.iterdir()) == ["ca-key.pem", "ca.pem"]


def test_expired_certificate_via_overrides(pki_dir: Path) -> None:
    start = datetime(2020, 1, 1, tzinfo=UTC)
    end = datetime(2020, 1, 2, tzinfo=UTC)
    paths = pki.issue_client_certificate(
        pki_dir, "site-1", Role.NODE, not_valid_before=start, not_valid_after=end
    )
    cert = pki.load_certificate(paths.certificate)
    assert (cert.not_valid_before_utc, cert.not_valid_after_utc) == (start, end)


def test_validity_overrides_must_be_aware_and_ordered(pki_dir: Path) -> None:
    naive = datetime(2020, 1, 1)  # naive on purpose
    with pytest.raises(PKIError, match=_starting("not_valid_before must be timezone-aware")):
        pki.issue_client_certificate(pki_dir, "site-1", Role.NODE, not_valid_before=naive)
    past = datetime(2020, 1, 1, tzinfo=UTC)
    with pytest.raises(
        PKIError, match=_starting("not_valid_after (2020-01-01T00:00:00+00:00) must")
    ):
        pki.issue_client_certificate(pki_dir, "site-1", Role.NODE, not_valid_after=past)
    with pytest.raises(PKIError, match=_exactly("valid_days must be at least 1, got 0")):
        pki.issue_client_certificate(pki_dir, "site-1", Role.NODE, valid_days=0)


def test_server_certificate_refuses_bad_sans(pki_dir: Path) -> None:
    with pytest.raises(PKIError, match=_exactly("'10.0.0.300' is not an IPv4 or IPv6 address")):
        pki.issue_server_certificate(pki_dir, ip_addresses=["10.0.0.300"])
    with pytest.raises(
        PKIError, match=_starting("a server certificate needs at least one DNS name")
    ):
        pki.issue_server_certificate(pki_dir, dns_names=[], ip_addresses=[])


def test_issuing_without_a_ca_names_the_missing_file(tmp_path: Path) -> None:
    message = f"{tmp_path} holds no CA ({tmp_path}/ca.pem is missing); run `fedseg-pki init` first"
    with pytest.raises(PKIError) as caught:
        pki.issue_client_certificate(tmp_path, "site-1", Role.NODE)
    assert str(caught.value) == message


def test_issuing_with_a_mismatched_ca_key_is_refused(pki_dir: Path, tmp_path: Path) -> None:
    pki.create_ca(tmp_path / "other")
    (pki_dir / "ca-key.pem").write_bytes((tmp_path / "other/ca-key.pem").read_bytes())
    with pytest.raises(
        PKIError, match=_starting(f"{pki_dir}/ca-key.pem is not the private key of")
    ):
        pki.issue_client_certificate(pki_dir, "site-1", Role.NODE)


def test_load_certificate_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(
        PKIError, match=_exactly(f"certificate file {tmp_path}/x.pem does not exist")
    ):
        pki.load_certificate(tmp_path / "x.pem")
    (tmp_path / "x.pem").write_text("not a certificate")
    with pytest.raises(PKIError, match=_exactly(f"{tmp_path}/x.pem is not a PEM certificate")):
        pki.load_certificate(tmp_path / "x.pem")


def test_signing_request_flow_never_needs_the_private_key(pki_dir: Path, tmp_path: Path) -> None:
    request = pki.create_signing_request(tmp_path / "hospital", "site-7", Role.NODE)
    assert request == pki.SigningRequestPaths(
        tmp_path / "hospital/site-7-key.pem", tmp_path / "hospital/site-7.csr"
    )
    key = serialization.load_pem_private_key(request.private_key.read_bytes(), None)
    request.private_key.unlink()  # the CA operator never has it
    out = pki.sign_request(pki_dir, request.request, Role.NODE, tmp_path / "issued/site-7.pem")
    cert = pki.load_certificate(out)
    csr = x509.load_pem_x509_csr(request.request.read_bytes())
    assert out == tmp_path / "issued/site-7.pem"
    assert cert.public_key() == csr.public_key() == key.public_key()
    assert identity_from_certificate(cert) == Identity("site-7", Role.NODE, cert.serial_number)
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert [p.name for p in (tmp_path / "issued").iterdir()] == ["site-7.pem"]
    assert _mode(out) == 0o644
    cert.verify_directly_issued_by(pki.load_certificate(pki_dir / "ca.pem"))


def test_sign_request_refuses_an_ou_that_differs_from_the_role(
    pki_dir: Path, tmp_path: Path
) -> None:
    request = pki.create_signing_request(tmp_path, "site-7", Role.NODE)
    message = f"{request.request} asks for role (OU) node, but it is being signed as admin"
    with pytest.raises(PKIError) as caught:
        pki.sign_request(pki_dir, request.request, Role.ADMIN, tmp_path / "out.pem")
    assert str(caught.value) == message
    assert not (tmp_path / "out.pem").exists()


def test_sign_request_without_ou_gets_the_role(pki_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "r.csr").write_bytes(_csr_pem(_name(cn="ops")))
    out = pki.sign_request(pki_dir, tmp_path / "r.csr", Role.ADMIN, tmp_path / "ops.pem")
    assert identity_from_certificate(pki.load_certificate(out)).role is Role.ADMIN


def test_sign_request_ignores_requested_extensions(pki_dir: Path, tmp_path: Path) -> None:
    pem = _csr_pem(
        _name(cn="site-1", ou="node"),
        x509.BasicConstraints(ca=True, path_length=None),
        x509.SubjectAlternativeName([x509.DNSName("aggregator.example")]),
    )
    (tmp_path / "r.csr").write_bytes(pem)
    cert = pki.load_certificate(
        pki.sign_request(pki_dir, tmp_path / "r.csr", Role.NODE, tmp_path / "c.pem")
    )
    assert _ext(cert, x509.BasicConstraints).value.ca is False
    with pytest.raises(x509.ExtensionNotFound):
        _ext(cert, x509.SubjectAlternativeName)


@pytest.mark.parametrize(
    ("subject", "message"),
    [
        (
            _name(cn="../../etc"),
            "name '../../etc' is not allowed: use 1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
        ),
        (_name(ou="node"), "{csr} must name its holder in exactly one common name (CN)"),
        (
            _name(cn="a", ou="server"),
            "{csr} asks for role (OU) server, but it is being signed as node",
        ),
    ],
)
def test_sign_request_refuses_bad_subjects(
    pki_dir: Path, tmp_path: Path, subject: x509.Name, message: str
) -> None:
    (tmp_path / "r.csr").write_bytes(_csr_pem(subject))
    with pytest.raises(PKIError) as caught:
        pki.sign_request(pki_dir, tmp_path / "r.csr", Role.NODE, tmp_path / "c.pem")
    assert str(caught.value) == message.format(csr=tmp_path / "r.csr")
    assert not (tmp_path / "c.pem").exists()


def test_sign_request_refuses_a_tampered_signature(pki_dir: Path, tmp_path: Path) -> None:
    csr = x509.load_pem_x509_csr(_csr_pem(_name(cn="site-1")))
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the last byte belongs to the ECDSA signature
    body = base64.encodebytes(bytes(der)).decode()
    pem = f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"
    (tmp_path / "r.csr").write_text(pem)
    with pytest.raises(
        PKIError, match=_exactly(f"the signature of {tmp_path}/r.csr does not match its public key")
    ):
        pki.sign_request(pki_dir, tmp_path / "r.csr", Role.NODE, tmp_path / "c.pem")


def test_sign_request_refuses_the_server_role_and_garbage(pki_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "r.csr").write_text("junk")
    with pytest.raises(PKIError, match="role must be node or admin"):
        pki.sign_request(pki_dir, tmp_path / "r.csr", Role.SERVER, tmp_path / "c.pem")
    with pytest.raises(
        PKIError, match=_starting(f"{tmp_path}/r.csr is not a PEM certificate signing")
    ):
        pki.sign_request(pki_dir, tmp_path / "r.csr", Role.NODE, tmp_path / "c.pem")


def test_bootstrap_creates_everything_then_keeps_it(tmp_path: Path) -> None:
    pki.bootstrap(tmp_path, ["site-1", "site-2"], admins=["ops"])
    names = ["aggregator", "ca", "ops", "site-1", "site-2"]
    expected = sorted([f"{n}.pem" for n in names] + [f"{n}-key.pem" for n in names])
    assert sorted(p.name for p in tmp_path.iterdir()) == expected
    roles = {
        n: identity_from_certificate(pki.load_certificate(tmp_path / f"{n}.pem")).role
        for n in ("aggregator", "ops", "site-1")
    }
    assert roles == {"aggregator": Role.SERVER, "ops": Role.ADMIN, "site-1": Role.NODE}
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    (tmp_path / "site-2.pem").unlink()
    (tmp_path / "site-2-key.pem").unlink()
    pki.bootstrap(tmp_path, ["site-1", "site-2"], admins=["ops"])
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert sorted(after) == expected
    changed = sorted(n for n in after if after[n] != before[n])
    assert changed == ["site-2-key.pem", "site-2.pem"]


def test_bootstrap_refuses_inconsistent_requests(tmp_path: Path) -> None:
    with pytest.raises(PKIError, match=_starting("the name 'x' is given twice")):
        pki.bootstrap(tmp_path, ["x"], admins=["x"])
    assert list(tmp_path.iterdir()) == []
    pki.bootstrap(tmp_path, ["site-1"])
    with pytest.raises(
        PKIError, match=_starting(f"{tmp_path}/site-1.pem has role node, but bootstrap")
    ):
        pki.bootstrap(tmp_path, [], admins=["site-1"])
    (tmp_path / "site-1-key.pem").unlink()
    with pytest.raises(PKIError, match=_starting(f"only one of {tmp_path}/site-1.pem and")):
        pki.bootstrap(tmp_path, ["site-1"])


# --- kits: what a holder receives, never the CA's key ---

URL = "https://aggregator.example:8443"


def _kit_files(folder: Path) -> dict[str, int]:
    return {p.name: _mode(p) for p in sorted(folder.iterdir())}


def _ca_key_bytes(pki_dir: Path) -> bytes:
    return (pki_dir / "ca-key.pem").read_bytes()


def test_issue_kit_holds_certificate_key_ca_and_settings_only(
    pki_dir: Path, tmp_path: Path
) -> None:
    kit = pki.issue_kit(pki_dir, tmp_path / "kits/site-1", "site-1", aggregator_url=URL + "/")
    folder = tmp_path / "kits/site-1"
    assert kit == pki.IssuedKit(
        folder=folder,
        name="site-1",
        role=Role.NODE,
        certificate=folder / "site-1.pem",
        private_key=folder / "site-1-key.pem",
        ca=folder / "ca.pem",
        env_file=folder / "node.env",
        issued=True,
    )
    assert _kit_files(folder) == {
        "ca.pem": 0o644,
        "node.env": 0o644,
        "site-1-key.pem": 0o600,
        "site-1.pem": 0o644,
    }
    assert _mode(folder) == 0o700
    assert kit.ca.read_bytes() == (pki_dir / "ca.pem").read_bytes()
    ca_key = _ca_key_bytes(pki_dir)
    assert not [p for p in folder.iterdir() if ca_key in p.read_bytes()]
    assert kit.env_file.read_text().splitlines()[2:] == [
        f"FEDSEG_AGGREGATOR_URL={URL}",
        "FEDSEG_TLS_CA=/kit/ca.pem",
        "FEDSEG_TLS_CERT=/kit/site-1.pem",
        "FEDSEG_TLS_KEY=/kit/site-1-key.pem",
        "FEDSEG_STATE_DIR=/var/lib/fedseg",
        "FEDSEG_DATA_DIR=/data",
    ]
    cert = pki.load_certificate(kit.certificate)
    assert identity_from_certificate(cert) == Identity("site-1", Role.NODE, cert.serial_number)
    cert.verify_directly_issued_by(pki.load_certificate(pki_dir / "ca.pem"))


def test_issue_kit_keeps_a_valid_kit_and_reissues_an_expired_one(
    pki_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "kit"
    first = pki.issue_kit(pki_dir, folder, "site-1", aggregator_url=URL)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    again = pki.issue_kit(pki_dir, folder, "site-1", aggregator_url=URL)
    assert (first.issued, again.issued) == (True, False)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    past = datetime.now(UTC) - timedelta(days=1)
    pki.issue_client_certificate(
        pki_dir, "site-1", Role.NODE, out_dir=folder,
        not_valid_before=past - timedelta(days=1), not_valid_after=past,
    )  # fmt: skip
    renewed = pki.issue_kit(pki_dir, folder, "site-1", aggregator_url=URL)
    assert renewed.issued
    assert pki.load_certificate(renewed.certificate).not_valid_after_utc > datetime.now(UTC)


def test_admin_and_server_kits_carry_their_own_settings(pki_dir: Path, tmp_path: Path) -> None:
    admin = pki.issue_kit(
        pki_dir, tmp_path / "ops", "ops", Role.ADMIN, aggregator_url=URL, mount="/home/ops/kit/"
    )
    server = pki.issue_kit(
        pki_dir, tmp_path / "agg", "aggregator", Role.SERVER,
        dns_names=["aggregator.example"], ip_addresses=[],
    )  # fmt: skip
    assert admin.env_file.name == "admin.env"
    assert admin.env_file.read_text().splitlines()[2:] == [
        f"FEDSEG_ADMIN_URL={URL}",
        "FEDSEG_ADMIN_CA=/home/ops/kit/ca.pem",
        "FEDSEG_ADMIN_CERT=/home/ops/kit/ops.pem",
        "FEDSEG_ADMIN_KEY=/home/ops/kit/ops-key.pem",
    ]
    assert server.env_file.name == "aggregator.env"
    assert server.env_file.read_text().splitlines()[2:] == [
        "FEDSEG_HOST=0.0.0.0",
        "FEDSEG_TLS_CA=/kit/ca.pem",
        "FEDSEG_TLS_CERT=/kit/aggregator.pem",
        "FEDSEG_TLS_KEY=/kit/aggregator-key.pem",
        "FEDSEG_STATE_DIR=/var/lib/fedseg",
    ]
    cert = pki.load_certificate(server.certificate)
    sans = _ext(cert, x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["aggregator.example"]
    assert identity_from_certificate(cert).role is Role.SERVER


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (None, "a node kit needs the aggregator's URL (https://host:port)"),
        ("http://aggregator:8443", "the aggregator URL must start with https://, got "
         "'http://aggregator:8443'"),
    ],
)  # fmt: skip
def test_issue_kit_refuses_a_missing_or_plaintext_url(
    pki_dir: Path, tmp_path: Path, url: str | None, message: str
) -> None:
    with pytest.raises(PKIError, match=_exactly(message)):
        pki.issue_kit(pki_dir, tmp_path / "kit", "site-1", aggregator_url=url)
    assert not (tmp_path / "kit").exists()


def test_issue_kit_refuses_the_ca_folder(pki_dir: Path) -> None:
    message = (
        f"{pki_dir} holds (or is) the CA's folder; a kit goes to a folder of its own, so the "
        f"CA's private key never travels with it"
    )
    with pytest.raises(PKIError, match=_exactly(message)):
        pki.issue_kit(pki_dir, pki_dir, "site-1", aggregator_url=URL)
    assert sorted(p.name for p in pki_dir.iterdir()) == ["ca-key.pem", "ca.pem"]


def test_issue_kit_refuses_a_kit_from_another_ca_or_holder(pki_dir: Path, tmp_path: Path) -> None:
    pki.create_ca(tmp_path / "rogue")
    pki.issue_client_certificate(tmp_path / "rogue", "site-1", Role.NODE, out_dir=tmp_path / "a")
    with pytest.raises(PKIError, match=_starting(f"{tmp_path}/a/site-1.pem was not issued by")):
        pki.issue_kit(pki_dir, tmp_path / "a", "site-1", aggregator_url=URL)
    pki.issue_kit(pki_dir, tmp_path / "b", "site-1", aggregator_url=URL)
    with pytest.raises(
        PKIError, match=_starting(f"{tmp_path}/b/site-1.pem belongs to site-1 (node)")
    ):
        pki.issue_kit(pki_dir, tmp_path / "b", "site-1", Role.ADMIN, aggregator_url=URL)


def test_kit_from_a_request_carries_no_key(pki_dir: Path, tmp_path: Path) -> None:
    request = pki.create_signing_request(tmp_path / "hospital", "site-7", Role.NODE)
    kit = pki.issue_kit_from_request(pki_dir, tmp_path / "kit", request.request, aggregator_url=URL)
    assert (kit.name, kit.private_key, kit.issued) == ("site-7", None, True)
    assert _kit_files(tmp_path / "kit") == {"ca.pem": 0o644, "node.env": 0o644, "site-7.pem": 0o644}
    assert "FEDSEG_TLS_KEY=/kit/site-7-key.pem" in kit.env_file.read_text().splitlines()
    key = serialization.load_pem_private_key(request.private_key.read_bytes(), None)
    assert pki.load_certificate(kit.certificate).public_key() == key.public_key()
    with pytest.raises(PKIError, match=_starting(f"{tmp_path}/hospital holds a private key")):
        pki.issue_kit_from_request(
            pki_dir, tmp_path / "hospital", request.request, aggregator_url=URL
        )
    assert sorted(p.name for p in (tmp_path / "hospital").iterdir()) == [
        "site-7-key.pem",
        "site-7.csr",
    ]


def test_bootstrap_with_kits_keeps_the_ca_folder_to_itself(tmp_path: Path) -> None:
    ca, kits = tmp_path / "ca", tmp_path / "kits"
    pki.bootstrap(ca, ["site-1"], ["ops"], kits_dir=kits, aggregator_url=URL)
    assert sorted(p.name for p in ca.iterdir()) == ["ca-key.pem", "ca.pem"]
    assert sorted(p.name for p in kits.iterdir()) == ["aggregator", "ops", "site-1"]
    assert sorted(_kit_files(kits / "ops")) == ["admin.env", "ca.pem", "ops-key.pem", "ops.pem"]
    before = {p: p.read_bytes() for p in sorted(tmp_path.rglob("*.pem"))}
    pki.bootstrap(ca, ["site-1"], ["ops"], kits_dir=kits, aggregator_url=URL)
    assert {p: p.read_bytes() for p in sorted(tmp_path.rglob("*.pem"))} == before
    with pytest.raises(
        PKIError, match=_exactly("kits for nodes and admins need the aggregator's https:// URL")
    ):
        pki.bootstrap(ca, ["site-2"], kits_dir=kits)


# --- revocation: the CA's CRL ---


def test_revoke_writes_a_crl_signed_by_the_ca(pki_dir: Path) -> None:
    paths = pki.issue_client_certificate(pki_dir, "site-1", Role.NODE)
    serial = pki.load_certificate(paths.certificate).serial_number
    holder, result = pki.revoke_certificate(
        pki_dir, paths.certificate, x509.ReasonFlags.key_compromise
    )
    assert (holder.name, holder.serial) == ("site-1", serial)
    assert (result.path, result.serials, result.number) == (pki_dir / "crl.pem", (serial,), 1)
    crl = pki.load_crl(result.path)
    ca = pki.load_certificate(pki_dir / "ca.pem")
    assert crl.is_signature_valid(ca.public_key())
    assert crl.issuer == ca.subject
    assert crl.next_update_utc == result.next_update
    assert timedelta(days=364) < result.next_update - datetime.now(UTC) <= timedelta(days=365)
    entry = crl.get_revoked_certificate_by_serial_number(serial)
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.key_compromise
    assert _mode(result.path) == 0o644


def test_revoke_keeps_earlier_entries_and_is_idempotent(pki_dir: Path) -> None:
    assert pki.issue_crl(pki_dir).serials == ()
    assert pki.revoke(pki_dir, 0xABC).serials == (0xABC,)
    again = pki.revoke(pki_dir, 0xABC)
    assert (again.serials, again.number) == ((0xABC,), 3)
    assert pki.revoke(pki_dir, 0xDEF).serials == (0xABC, 0xDEF)
    refreshed = pki.issue_crl(pki_dir, valid_days=7)
    assert (refreshed.serials, refreshed.number) == ((0xABC, 0xDEF), 5)
    assert refreshed.next_update - datetime.now(UTC) <= timedelta(days=7)
    with pytest.raises(PKIError, match=_exactly("a certificate serial number is positive, got 0")):
        pki.revoke(pki_dir, 0)


def test_revoke_refuses_other_cas_certificates_and_crls(pki_dir: Path, tmp_path: Path) -> None:
    pki.create_ca(tmp_path / "rogue")
    rogue = pki.issue_client_certificate(tmp_path / "rogue", "site-1", Role.NODE)
    with pytest.raises(PKIError, match=_starting(f"{rogue.certificate} was not issued by")):
        pki.revoke_certificate(pki_dir, rogue.certificate)
    assert not (pki_dir / "crl.pem").exists()
    pki.issue_crl(tmp_path / "rogue")
    (pki_dir / "crl.pem").write_bytes((tmp_path / "rogue/crl.pem").read_bytes())
    with pytest.raises(PKIError, match=_starting(f"{pki_dir}/crl.pem was not signed by the CA")):
        pki.revoke(pki_dir, 5)


# --- real TLS: the certificates work with Python's ssl module as the services use it ---


# OpenSSL's verify codes (x509_vfy.h); its messages for them differ between versions.
X509_V_ERR_CERT_HAS_EXPIRED = 10
X509_V_ERR_CERT_REVOKED = 23
X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20
X509_V_ERR_INVALID_PURPOSE = 26


@pytest.fixture
def federation(tmp_path: Path) -> Path:
    pki.bootstrap(tmp_path / "pki", ["site-1"])
    return tmp_path / "pki"


def _context(*, server: bool, ca: Path, credentials: pki.CertificatePaths) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_STRICT  # what Python 3.13 turns on by default
    context.load_verify_locations(ca)
    context.load_cert_chain(credentials.certificate, credentials.private_key)
    return context


def _handshake(
    pki_dir: Path,
    client: pki.CertificatePaths,
    server: pki.CertificatePaths | None = None,
    server_ctx: ssl.SSLContext | None = None,
) -> tuple[Identity | BaseException, BaseException | None]:
    """Run one mTLS exchange over a socket pair; return (server outcome, client error)."""
    server = server or pki.CertificatePaths(
        pki_dir / "aggregator.pem", pki_dir / "aggregator-key.pem"
    )
    ca = pki_dir / "ca.pem"
    server_ctx = server_ctx or _context(server=True, ca=ca, credentials=server)
    client_ctx = _context(server=False, ca=ca, credentials=client)
    server_sock, client_sock = socket.socketpair()
    outcome: list[Identity | BaseException] = []

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(server_sock, server_side=True) as tls:
                outcome.append(identity_from_der(tls.getpeercert(binary_form=True) or b""))
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            outcome.append(exc)

    for sock in (server_sock, client_sock):
        sock.settimeout(5)
    thread = threading.Thread(target=serve)
    thread.start()
    client_error: BaseException | None = None
    try:
        with client_ctx.wrap_socket(client_sock, server_hostname="localhost") as tls:
            assert tls.recv(2) == b"ok"
    except (ssl.SSLError, OSError) as exc:
        client_error = exc
    finally:
        client_sock.close()
        thread.join(timeout=10)
        server_sock.close()
    return outcome[0], client_error


def test_tls_handshake_succeeds_with_a_node_certificate(federation: Path) -> None:
    node = pki.CertificatePaths(federation / "site-1.pem", federation / "site-1-key.pem")
    outcome, client_error = _handshake(federation, node)
    assert client_error is None
    assert isinstance(outcome, Identity)
    assert (outcome.name, outcome.role) == ("site-1", Role.NODE)


def test_tls_refuses_a_certificate_from_another_ca(federation: Path, tmp_path: Path) -> None:
    pki.create_ca(tmp_path / "rogue")
    rogue = pki.issue_client_certificate(tmp_path / "rogue", "site-1", Role.NODE)
    outcome, client_error = _handshake(federation, rogue)
    assert isinstance(outcome, ssl.SSLCertVerificationError)
    assert outcome.verify_code == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    assert client_error is not None


def test_tls_refuses_an_expired_certificate(federation: Path, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    expired = pki.issue_client_certificate(
        federation,
        "site-1",
        Role.NODE,
        out_dir=tmp_path / "old",
        not_valid_before=now - timedelta(days=2),
        not_valid_after=now - timedelta(days=1),
    )
    outcome, client_error = _handshake(federation, expired)
    assert isinstance(outcome, ssl.SSLCertVerificationError)
    assert outcome.verify_code == X509_V_ERR_CERT_HAS_EXPIRED
    assert client_error is not None


def test_tls_refuses_a_server_certificate_used_as_a_client(federation: Path) -> None:
    server = pki.CertificatePaths(federation / "aggregator.pem", federation / "aggregator-key.pem")
    outcome, _ = _handshake(federation, server)
    assert isinstance(outcome, ssl.SSLCertVerificationError)
    assert outcome.verify_code == X509_V_ERR_INVALID_PURPOSE


def test_tls_client_refuses_a_node_certificate_used_as_a_server(federation: Path) -> None:
    node = pki.CertificatePaths(federation / "site-1.pem", federation / "site-1-key.pem")
    _, client_error = _handshake(federation, node, server=node)
    assert isinstance(client_error, ssl.SSLCertVerificationError)
    assert client_error.verify_code == X509_V_ERR_INVALID_PURPOSE


def test_tls_with_the_crl_refuses_a_revoked_certificate_only(federation: Path) -> None:
    site_1 = pki.CertificatePaths(federation / "site-1.pem", federation / "site-1-key.pem")
    admin = pki.CertificatePaths(federation / "admin.pem", federation / "admin-key.pem")
    crl = pki.revoke_certificate(federation, site_1.certificate)[1].path

    def server() -> ssl.SSLContext:
        files = (federation / "aggregator.pem", federation / "aggregator-key.pem")
        return server_ssl_context(*files, federation / "ca.pem", crl)

    outcome, client_error = _handshake(federation, site_1, server_ctx=server())
    assert isinstance(outcome, ssl.SSLCertVerificationError)
    assert outcome.verify_code == X509_V_ERR_CERT_REVOKED
    assert client_error is not None
    outcome, client_error = _handshake(federation, admin, server_ctx=server())
    assert client_error is None
    assert isinstance(outcome, Identity)
    assert outcome.name == "admin"
