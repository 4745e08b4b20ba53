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
