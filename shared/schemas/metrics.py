"""What a node measures on its validation split: Dice and HD95 per tumour region."""

from __future__ import annotations

from pydantic import Field

from shared.schemas.base import _Strict
from shared.schemas.privacy import MetricsRelease

MAX_DISTANCE_MM = 10_000.0
"""No distance inside a scanned head comes near 10 m; a larger value is a broken report."""


class RegionDice(_Strict):
    """Dice per tumour region and their mean, each in [0, 1]."""

    tc: float = Field(ge=0.0, le=1.0)
    wt: float = Field(ge=0.0, le=1.0)
    et: float = Field(ge=0.0, le=1.0)
    mean: float = Field(ge=0.0, le=1.0)


class RegionDistance(_Strict):
    """A surface distance per tumour region and their mean, in millimetres."""

    tc: float = Field(ge=0.0, le=MAX_DISTANCE_MM)
    wt: float = Field(ge=0.0, le=MAX_DISTANCE_MM)
    et: float = Field(ge=0.0, le=MAX_DISTANCE_MM)
    mean: float = Field(ge=0.0, le=MAX_DISTANCE_MM)


class UpdateMetrics(_Strict):
    """What a node measured in one round on its own validation split."""

    dice_global: RegionDice | None = None
    """The received global model, before local training."""
    dice_local: RegionDice | None = None
    """The locally trained model, after local training."""
    hd95_global: RegionDistance | None = None
    """HD95 of the received global model, when the plan asks for it."""
    hd95_local: RegionDistance | None = None
    """HD95 of the locally trained model, when the plan asks for it."""
    train_loss: float | None = None
    train_seconds: float | None = Field(default=None, ge=0.0)
    protection: MetricsRelease = MetricsRelease.EXACT
    """How these numbers left the node: exact, withheld (all None) or Laplace-noised Dice."""
