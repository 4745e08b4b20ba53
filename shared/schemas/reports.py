"""What a node sends the aggregator (announcement, update, decline, evaluation) and its receipt."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from shared.schemas.base import SHA256_PATTERN, Count, Number, Weight, _Strict
from shared.schemas.metrics import UpdateMetrics
from shared.schemas.privacy import PrivacySpend, PrivacyTotal
from shared.schemas.states import FailureKind


class Announcement(_Strict):
    """What a node tells the aggregator about itself when it starts."""

    protocol: Number
    """The node's PROTOCOL_VERSION; the aggregator refuses any other."""
    software_version: str = Field(max_length=64)
    device: str = Field(max_length=64)
    num_train_cases: Count | None = None
    """Sent only when the hospital opts in (FEDSEG_ANNOUNCE_CASE_COUNTS): a count is private."""
    num_val_cases: Count | None = None


class NodeFailure(_Strict):
    """A node says it failed, before it exits or retries.

    Only a category and the exception's type travel: a message could name a patient's case,
    a path or a count, so the full text stays in the hospital's own log.
    """

    kind: FailureKind
    error_type: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]{0,79}$")
    will_retry: bool = False
    """True when the node goes on (it retries); False when the process exits."""


class UpdateManifest(_Strict):
    """Binds an update to its task; carried inside the safetensors ``__metadata__``.

    Tensors named in ``sparse`` travel as ``<name>::positions`` (uint8: the released flat
    positions as a bitmap or Rice-coded gaps, whichever is smaller; shared.sparse_codec)
    and ``<name>::values`` (float32 [k], in position order); tensors named in ``excluded``
    are absent. Every other tensor of the model travels dense. (Protocol 2 sent int64
    ``<name>::indices``; protocol 3 refuses them.)
    """

    run_id: Number
    round: Number
    task_nonce: str = Field(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")
    base_model: str = Field(pattern=SHA256_PATTERN)
    num_samples: Weight
    """The FedAvg weight: the cases trained on, or under a DP policy a public figure from the
    plan (its max_steps, else 1), since a sample count is private."""
    metrics: UpdateMetrics = UpdateMetrics()
    sparse: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    privacy: PrivacySpend | None = None
    privacy_total: PrivacyTotal | None = None


class Decline(_Strict):
    """A node's refusal to release an update this round (e.g. its privacy budget is spent)."""

    run_id: Number
    round: Number
    task_nonce: str = Field(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")
    base_model: str = Field(pattern=SHA256_PATTERN)
    reason: str = Field(min_length=1, max_length=1000)
    privacy_total: PrivacyTotal | None = None


class EvaluationReport(_Strict):
    """A node's measurement of the final global model (evaluation rounds carry no tensors)."""

    run_id: Number
    round: Number
    task_nonce: str = Field(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")
    base_model: str = Field(pattern=SHA256_PATTERN)
    num_samples: Count | None = Field(default=None, description="validation cases measured")
    """None when withheld; a noised count under metrics=laplace."""
    metrics: UpdateMetrics
    privacy: PrivacySpend | None = None
    privacy_total: PrivacyTotal | None = None


class UpdateReceipt(_Strict):
    """The aggregator's answer to an accepted update; the same bytes get the same receipt."""

    run_id: int
    round: int
    node: str
    sha256: str
    num_samples: int
    accepted_at: datetime
