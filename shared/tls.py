"""TLS contexts for both ends of the federation: TLS 1.2+, mutual, federation CA only."""

from __future__ import annotations

import ssl
from pathlib import Path

_SERVER_SIDE = {
    # OpenSSL reasons this end reports when the peer's certificate is not what it trusts.
    "CERTIFICATE_VERIFY_FAILED": (
        "the aggregator's certificate is not signed by the CA this side trusts (the kit's "
        "ca.pem), or a TLS-inspecting proxy replaced it; use the federation's ca.pem and "
        "exempt the aggregator from TLS inspection"
    ),
    "WRONG_VERSION_NUMBER": (
        "the server does not speak TLS (a plain-HTTP server or proxy on that port?); "
        "check the URL's host and port"
    ),
    "RECORD_LAYER_FAILURE": (
        "the server does not speak TLS (a plain-HTTP server or proxy on that port?); "
        "check the URL's host and port"
    ),
}
_CLIENT_SIDE = {
    # Alerts the aggregator sends when it refuses this side's certificate.
    "TLSV1_ALERT_UNKNOWN_CA": "the aggregator does not trust this certificate's CA",
    "SSLV3_ALERT_CERTIFICATE_REVOKED": "the aggregator's CRL lists this certificate as revoked",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "this certificate has expired (or is not yet valid)",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the aggregator refused this certificate",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the aggregator requires a client certificate",
}
_VERIFY_CODES = {
    # OpenSSL X509_V_ERR_* codes of a failed verification of the aggregator's certificate.
    62: "the aggregator's certificate is not valid for this host name; use the name (or IP) "
    "it was issued for in FEDSEG_AGGREGATOR_URL, or reissue it with that SAN",
    64: "the aggregator's certificate is not valid for this IP address; use the name (or IP) "
    "it was issued for in FEDSEG_AGGREGATOR_URL, or reissue it with that SAN",
    10: "the aggregator's certificate has expired; the operator must renew it",
    9: "the aggregator's certificate is not valid yet; check both machines' clocks",
}


CLOSED_WITHOUT_ANSWER = (
    "the aggregator closed the connection without an answer: most likely it refused this "
    "side's certificate (not issued by the federation CA, expired, or on its CRL); check the "
    "kit's certificate with `openssl verify -CAfile ca.pem`"
)
"""Under TLS 1.3 a server refuses a client certificate after the client's handshake is
done, and uvicorn closes without an alert, so the client sees only a closed connection."""


def describe_tls_failure(exc: BaseException) -> str | None:
    """Which side's certificate or CA is wrong, from the ssl error under ``exc``; or None
    when it is nothing retrying could not fix (an unknown reason, a connection cut
    mid-handshake by a restart or a proxy: the caller retries).

    Reads OpenSSL's reason and verification codes, never the message wording.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for arg in (current, *current.args):
            if isinstance(arg, ssl.SSLError):
                reason = str(arg.reason or "")
                if isinstance(arg, ssl.SSLCertVerificationError):
                    code = int(getattr(arg, "verify_code", 0) or 0)
                    return _VERIFY_CODES.get(code, _SERVER_SIDE["CERTIFICATE_VERIFY_FAILED"])
                if reason in _SERVER_SIDE:
                    return _SERVER_SIDE[reason]
                if reason in _CLIENT_SIDE:
                    return (
                        f"{_CLIENT_SIDE[reason]}; ask the federation's operator for a "
                        "certificate from the federation CA"
                    )
                return None  # a connection cut mid-handshake (a restart, a proxy): retry
        current = current.__cause__ or current.__context__
    return None


def server_ssl_context(cert: Path, key: Path, ca: Path, crl: Path | None = None) -> ssl.SSLContext:
    """TLS 1.2+ server context that requires a client certificate issued by ``ca``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    context.load_verify_locations(cafile=str(ca))
    context.verify_mode = ssl.CERT_REQUIRED
    if crl is not None:
        context.load_verify_locations(cafile=str(crl))
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return context


def client_ssl_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """TLS 1.2+ client context that presents ``cert`` and trusts only the federation CA."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    return context
