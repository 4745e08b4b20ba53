"""fedseg's exception hierarchy: the one home of every error's HTTP status and wire code.

Each class knows the status the aggregator answers with and a stable machine-readable
``code`` sent next to ``detail`` in every error body; clients choose what to do (retry,
stop, decline) by that code, never by the wording of the message.

FedsegError                         500 internal_error
├── ConfigurationError              a setting is missing, insecure or inconsistent
│   └── LedgerIntegrityError        the node's privacy ledger is missing, cut short or altered
├── DataError                       a hospital's data folder cannot be read as BraTS/MSD
├── PKIError                        a certificate, key or request cannot be made or read
├── InvalidRequestError             400 a request that cannot be understood
│   └── MalformedUpdateError        400 the body is not a readable safetensors file
├── AuthenticationRequiredError     401 no client certificate
├── PermissionDeniedError           403 the certificate's identity may not do this
│   ├── CertificateRevokedError     403 the certificate is on the denylist
│   └── BrowserWriteRefusedError    403 a browser asked to change state (CSRF guard)
├── NotFoundError                   404 no such run, round, model or task
├── ConflictError                   409 the request is valid but the state disagrees
│   ├── StaleModelError             409 the update was trained on a model that is not current
│   ├── RoundNotOpenError           409 the round is not accepting updates
│   ├── DuplicateUpdateError        409 another update was already accepted for (round, node)
│   └── NotExpectedError            409 the node is not (or no longer) part of the run
├── ProtocolMismatchError           409 the node speaks another wire protocol (it stops)
├── PayloadTooLargeError            413 the body passed the configured size limit
├── TooManyRequestsError            429 too many of this caller's requests in flight
├── RequestValidationFailedError    422 a field of the body, path or query is invalid
├── UpdateRejectedError             422 a well-formed update that does not fit the model
│   ├── SpecMismatchError           422 key set, shape or dtype differs from the global model
│   └── NonFiniteError              422 NaN or infinity in a tensor
├── PolicyRejectedError             422 a run's privacy policy cannot run as configured
├── StorageError                    503 the aggregator could not write its state folder
│   └── StorageFullError            507 its disk or quota is full
└── TransportError                  the node cannot reach or understand the aggregator
    └── TlsError                    the handshake failed for good (wrong CA, not TLS)
"""

from __future__ import annotations

from typing import ClassVar


class FedsegError(Exception):
    """Base of every error fedseg raises on purpose."""

    status: ClassVar[int] = 500
    """The HTTP status the aggregator answers with when this error ends a request."""
    code: ClassVar[str] = "internal_error"
    """Stable wire code (unique per class); the client's decisions key on it."""


class ConfigurationError(FedsegError):
    """A setting is missing, insecure or inconsistent."""

    code = "configuration_error"


class LedgerIntegrityError(ConfigurationError):
    """The node's privacy ledger is missing, cut short or altered; the message says what to do."""

    code = "ledger_integrity"


class DataError(FedsegError):
    """A data folder or file cannot be read as the expected layout."""

    code = "data_error"


class PKIError(FedsegError):
    """A certificate, key or signing request cannot be created or read."""

    code = "pki_error"


class InvalidRequestError(FedsegError):
    """A request that cannot be understood."""

    status, code = 400, "invalid_request"


class MalformedUpdateError(InvalidRequestError):
    """The body is not a readable safetensors file with a valid manifest."""

    code = "malformed_update"


class AuthenticationRequiredError(FedsegError):
    """The request came without a client certificate."""

    status, code = 401, "certificate_required"


class PermissionDeniedError(FedsegError):
    """The caller's certificate identity may not perform this action."""

    status, code = 403, "permission_denied"


class CertificateRevokedError(PermissionDeniedError):
    """The caller's certificate is on the aggregator's denylist: it is refused for good."""

    code = "certificate_revoked"


class BrowserWriteRefusedError(PermissionDeniedError):
    """A state-changing request came from a web browser (cross-site request forgery guard)."""

    code = "browser_write_refused"


class NotFoundError(FedsegError):
    """No such run, round, model version or task."""

    status, code = 404, "not_found"


class ConflictError(FedsegError):
    """The request is valid but the federation's state disagrees with it."""

    status, code = 409, "conflict"


class StaleModelError(ConflictError):
    """The update was computed from a global model that is not the round's base."""

    code = "stale_model"


class RoundNotOpenError(ConflictError):
    """The round is not accepting updates."""

    code = "round_not_open"


class DuplicateUpdateError(ConflictError):
    """A different update was already accepted for this (round, node)."""

    code = "duplicate_update"


class ProtocolMismatchError(FedsegError):
    """The aggregator and this node speak different wire protocols: retrying cannot help.

    A 409 like a conflict, but not a ConflictError: a node stops on it instead of moving on.
    """

    status, code = 409, "protocol_mismatch"


class NotExpectedError(ConflictError):
    """The node is not, or no longer, one of the run's expected nodes."""

    code = "node_not_expected"


class PayloadTooLargeError(FedsegError):
    """The request body passed the configured size limit."""

    status, code = 413, "payload_too_large"


class TooManyRequestsError(FedsegError):
    """The caller already has as many requests of this kind in flight as it may."""

    status, code = 429, "too_many_requests"


class RequestValidationFailedError(FedsegError):
    """A field of the request's body, path or query does not validate."""

    status, code = 422, "validation_error"


class UpdateRejectedError(FedsegError):
    """A well-formed update that does not fit the global model."""

    status, code = 422, "update_rejected"


class SpecMismatchError(UpdateRejectedError):
    """Key set, shape or dtype differs from the global model."""

    code = "spec_mismatch"


class NonFiniteError(UpdateRejectedError):
    """A tensor holds NaN or infinity."""

    code = "non_finite"


class PolicyRejectedError(FedsegError):
    """A run's privacy policy cannot run as configured (checked by the nodes' own code)."""

    status, code = 422, "policy_rejected"


class StorageError(FedsegError):
    """The aggregator could not write to its state folder (read-only, I/O error): retry later."""

    status, code = 503, "storage_unavailable"


class StorageFullError(StorageError):
    """The aggregator's disk or quota is full: nothing was stored; retry once space is freed."""

    status, code = 507, "storage_full"


class TransportError(FedsegError):
    """The node cannot reach the aggregator or cannot understand its answer."""

    status, code = 502, "transport_error"


class TlsError(TransportError):
    """The TLS handshake failed for a reason retrying cannot fix (wrong CA, not TLS, revoked)."""

    code = "tls_failure"


def error_classes() -> list[type[FedsegError]]:
    """Every class of this hierarchy, base first (subclasses defined elsewhere excluded)."""
    found: list[type[FedsegError]] = []
    pending: list[type[FedsegError]] = [FedsegError]
    while pending:
        kind = pending.pop(0)
        if kind.__module__ == __name__:
            found.append(kind)
        pending.extend(kind.__subclasses__())
    return found


def for_code(code: object) -> type[FedsegError] | None:
    """The class whose wire ``code`` this is, or None for an unknown or missing code."""
    for kind in error_classes():
        if kind.code == code:
            return kind
    return None
