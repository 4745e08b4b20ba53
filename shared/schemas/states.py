"""Lifecycle states of runs, rounds and updates, and what a missed deadline does."""

from __future__ import annotations

from enum import StrEnum


class RunState(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    ABORTED = "aborted"


class RoundState(StrEnum):
    OPEN = "open"
    AGGREGATING = "aggregating"
    CLOSED = "closed"
    FAILED = "failed"
    ABORTED = "aborted"


class RoundKind(StrEnum):
    """A training round produces a new model; the final evaluation round only measures it."""

    TRAIN = "train"
    EVALUATE = "evaluate"


class DeadlinePolicy(StrEnum):
    """What happens when a round's deadline passes with fewer than ``min_nodes`` updates."""

    REOPEN = "reopen"
    FAIL = "fail"


class UpdateStatus(StrEnum):
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXCLUDED = "excluded"
    """Accepted, then its node was removed from the run before the round closed."""


class NodeState(StrEnum):
    """What the operator sees of a node, worst first: the first that applies wins."""

    REVOKED = "revoked"
    """Its certificate is on the aggregator's denylist."""
    FAILED = "failed"
    """It reported a failure (training, data, configuration) or declined, and has not recovered."""
    OFFLINE = "offline"
    """Not seen for longer than the aggregator's ``offline_after_s``."""
    LATE = "late"
    """Expected in the current round past its deadline, or missed the last round that closed."""
    OK = "ok"


class FailureKind(StrEnum):
    """Why a node stopped or is retrying, as it tells the aggregator (no data, no paths)."""

    CONFIGURATION = "configuration"
    DATA = "data"
    PRIVACY = "privacy"
    TRAINING = "training"
    CONNECTION = "connection"
    INTERNAL = "internal"
