"""Tests of the benchmark's results: Dice pooled over sites."""

from __future__ import annotations

import pytest

from benchmarks.quality.results import weighted_dice
from shared.schemas import RegionDice


def test_weighted_dice_weights_sites_by_validation_cases() -> None:
    first = RegionDice(tc=1.0, wt=1.0, et=1.0, mean=1.0)
    second = RegionDice(tc=0.0, wt=0.5, et=0.2, mean=0.7 / 3)

    pooled = weighted_dice([(first, 1), (second, 3)])

    assert (pooled.tc, pooled.wt, pooled.et) == pytest.approx((0.25, 0.625, 0.4))
    assert pooled.mean == pytest.approx((0.25 + 0.625 + 0.4) / 3)


def test_weighted_dice_without_cases_raises() -> None:
    with pytest.raises(ValueError, match="at least one site with validation cases"):
        weighted_dice([])
