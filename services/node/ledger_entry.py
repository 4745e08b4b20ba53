"""What the privacy ledger records: the node-chosen key of a release, and its entry."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from shared.errors import PKIError
from shared.schemas import PrivacySpend

IMPORTED_FEDERATION = "unknown-imported"
IMPORTED_SHA256 = hashlib.sha256(b"").hexdigest()
"""The sha256 of imported entries: the old ledger kept no bytes, so none can match."""
HEX64 = re.compile(r"[0-9a-f]{64}")


class ReleaseKind(StrEnum):
    UPDATE = "update"
    EVALUATION = "evaluation"


@dataclass(frozen=True)
class ReleaseKey:
    """One release the node may make once: chosen by the node, not by the aggregator."""

    federation: str
    """Hex SHA-256 of the federation CA certificate (DER) the node trusts."""
    run_id: int
    round: int
    kind: ReleaseKind

    def __post_init__(self) -> None:
        if not (HEX64.fullmatch(self.federation) or self.federation == IMPORTED_FEDERATION):
            raise ValueError(
                f"federation must be the hex SHA-256 of the CA certificate (federation_id), "
                f"got {self.federation!r}"
            )
        for name in ("run_id", "round"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        object.__setattr__(self, "kind", ReleaseKind(self.kind))

    def __str__(self) -> str:
        return f"{self.federation[:12]} run {self.run_id} round {self.round} {self.kind}"


def federation_id(ca_pem: Path) -> str:
    """Hex SHA-256 of the DER of the first certificate in ``ca_pem``."""
    try:
        certificates = x509.load_pem_x509_certificates(ca_pem.read_bytes())
    except OSError as exc:
        raise PKIError(f"CA certificate file {ca_pem} cannot be read: {exc.strerror}") from None
    except ValueError:
        raise PKIError(f"{ca_pem} is not a PEM certificate") from None
    return hashlib.sha256(certificates[0].public_bytes(Encoding.DER)).hexdigest()


@dataclass(frozen=True)
class LedgerEntry:
    seq: int
    key: ReleaseKey
    spends: tuple[PrivacySpend, ...]
    sha256: str
    """Of the exact bytes sent."""
    recorded_at: datetime
