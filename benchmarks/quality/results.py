"""What a setting yields: Dice after every round, pooled over sites, and the privacy spent."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.quality.config import Setting
from shared.privacy.mechanisms import mechanism_for
from shared.schemas import PrivacyUnit, RegionDice


@dataclass(frozen=True)
class SettingResult:
    """Dice after every round (index 0: the initial model, -1: final) and privacy spent.

    ``noise_multiplier`` is the sigma the run applied (DP-SGD: derived by the aggregator
    from the whole run's target epsilon); None without noise.
    """

    setting: Setting
    per_round: list[RegionDice]
    steps: int
    seconds: float
    epsilon_round: float | None = None
    epsilon_total: float | None = None
    delta: float = 0.0
    noise_multiplier: float | None = None

    @property
    def final(self) -> RegionDice:
        return self.per_round[-1]

    @property
    def unit(self) -> PrivacyUnit:
        """Whose data the epsilon protects: one patient (DP-SGD), a whole update, or none."""
        if self.setting.policy is None:
            return PrivacyUnit.NONE
        return mechanism_for(self.setting.policy.mechanism).unit


def weighted_dice(scores: Sequence[tuple[RegionDice, int]]) -> RegionDice:
    """Mean of per-site Dice weighted by validation cases, i.e. the Dice over pooled cases."""
    total = sum(weight for _, weight in scores)
    if total <= 0:
        raise ValueError("weighted_dice needs at least one site with validation cases")
    tc, wt, et = (
        sum(getattr(dice, region) * weight for dice, weight in scores) / total
        for region in ("tc", "wt", "et")
    )
    return RegionDice(tc=tc, wt=wt, et=et, mean=(tc + wt + et) / 3.0)
