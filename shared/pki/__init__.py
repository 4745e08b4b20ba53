"""The federation's PKI: one CA issuing certificates, hospital kits and a CRL (DESIGN 3.1)."""

from shared.pki.bootstrap import bootstrap
from shared.pki.ca import (
    CA_CERTIFICATE,
    CA_PRIVATE_KEY,
    check_issued_by,
    create_ca,
    load_certificate,
)
from shared.pki.crl import (
    CRL_FILE,
    CRL_VALID_DAYS,
    RevocationList,
    issue_crl,
    load_crl,
    revoke,
    revoke_certificate,
)
from shared.pki.fields import CLOCK_SKEW
from shared.pki.issue import (
    DEFAULT_DNS_NAMES,
    DEFAULT_IP_ADDRESSES,
    CertificatePaths,
    SigningRequestPaths,
    create_signing_request,
    issue_client_certificate,
    issue_server_certificate,
    sign_request,
)
from shared.pki.kits import KIT_ENV_FILES, KIT_MOUNT, IssuedKit, issue_kit, issue_kit_from_request

__all__ = [
    "CA_CERTIFICATE",
    "CA_PRIVATE_KEY",
    "CLOCK_SKEW",
    "CRL_FILE",
    "CRL_VALID_DAYS",
    "DEFAULT_DNS_NAMES",
    "DEFAULT_IP_ADDRESSES",
    "KIT_ENV_FILES",
    "KIT_MOUNT",
    "CertificatePaths",
    "IssuedKit",
    "RevocationList",
    "SigningRequestPaths",
    "bootstrap",
    "check_issued_by",
    "create_ca",
    "create_signing_request",
    "issue_client_certificate",
    "issue_crl",
    "issue_kit",
    "issue_kit_from_request",
    "issue_server_certificate",
    "load_certificate",
    "load_crl",
    "revoke",
    "revoke_certificate",
    "sign_request",
]
