"""fedseg's exception hierarchy; the API edge maps each branch to one HTTP status.

FedsegError
├── ConfigurationError        a setting is missing, insecure or inconsistent
│   └── LedgerIntegrityError  the node's privacy ledger is missing, cut short or altered
├── DataError                 a hospital's data folder cannot be read as BraTS/MSD
├── PKIError                  a certificate, key or request cannot be made or read
├── InvalidRequestError       (400) a request that cannot be understood
│   └── MalformedUpdateError  (400) the body is not a readable safetensors file
├── UpdateRejectedError       (422) a well-formed update that does not fit the model
│   ├── SpecMismatchError     (422) key set, shape or dtype differs from the global model
│   └── NonFiniteError        (422) NaN or infinity in a tensor
├── PolicyRejectedError       (422) a run's privacy policy cannot run as configured
├── PayloadTooLargeError      (413) the body passed the configured size limit
├── PermissionDeniedError     (403) the certificate's identity may not do this
├── NotFoundError             (404) no such run, round, model or task
├── ConflictError             (409) the request is valid but the state disagrees
│   ├── StaleModelError       (409) the update was trained on a model that is not current
│   ├── RoundNotOpenError     (409) the round is not accepting updates
│   └── DuplicateUpdateError  (409) another update was already accepted for (round, node)
└── TransportError            the node cannot reach or understand the aggregator
"""

from __future__ import annotations


class FedsegError(Exception):
    """Base of every error fedseg raises on purpose."""


class ConfigurationError(FedsegError):
    """A setting is missing, insecure or inconsistent."""


class LedgerIntegrityError(ConfigurationError):
    """The node's privacy ledger is missing, cut short or altered; the message says what to do."""


class DataError(FedsegError):
    """A data folder or file cannot be read as the expected layout."""


class PKIError(FedsegError):
    """A certificate, key or signing request cannot be created or read."""


class InvalidRequestError(FedsegError):
    """A request that cannot be understood."""


class MalformedUpdateError(InvalidRequestError):
    """The body is not a readable safetensors file with a valid manifest."""


class UpdateRejectedError(FedsegError):
    """A well-formed update that does not fit the global model."""


class SpecMismatchError(UpdateRejectedError):
    """Key set, shape or dtype differs from the global model."""


class PolicyRejectedError(FedsegError):
    """A run's privacy policy cannot run as configured (checked by the nodes' own code)."""


class NonFiniteError(UpdateRejectedError):
    """A tensor holds NaN or infinity."""


class PayloadTooLargeError(FedsegError):
    """The request body passed the configured size limit."""


class StorageError(FedsegError):
    """The aggregator could not write to its state folder (read-only, I/O error): retry later."""


class StorageFullError(StorageError):
    """The aggregator's disk or quota is full: nothing was stored; retry once space is freed."""


class PermissionDeniedError(FedsegError):
    """The caller's certificate identity may not perform this action."""


class NotFoundError(FedsegError):
    """No such run, round, model version or task."""


class ConflictError(FedsegError):
    """The request is valid but the federation's state disagrees with it."""


class StaleModelError(ConflictError):
    """The update was computed from a global model that is not the round's base."""


class RoundNotOpenError(ConflictError):
    """The round is not accepting updates."""


class DuplicateUpdateError(ConflictError):
    """A different update was already accepted for this (round, node)."""


class ProtocolMismatchError(FedsegError):
    """The aggregator and this node speak different wire protocols: retrying cannot help."""


class TransportError(FedsegError):
    """The node cannot reach the aggregator or cannot understand its answer."""
