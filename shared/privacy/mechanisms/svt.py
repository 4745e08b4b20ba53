"""The Sparse Vector Technique as a mechanism: epsilon-DP per round, update level."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from shared.privacy.mechanisms.base import PrivacyMechanism, Released
from shared.privacy.mechanisms.partial import check_fraction
from shared.privacy.svt import ACCOUNTING, svt_release
from shared.schemas import Mechanism, PrivacyPolicy, PrivacySpend, PrivacyUnit, TrainingPlan


class SparseVector(PrivacyMechanism):
    name = Mechanism.SVT
    unit = PrivacyUnit.UPDATE
    differentially_private = True
    sends_sparse = True
    settings = frozenset({"fraction", "clip", "epsilon", "threshold"})
    required = (("clip", "clip (gamma)"), ("epsilon", "epsilon"))
    citation = "Lyu, Su and Li, PVLDB 2017; Li et al., MLMI 2019"

    def validate(self, policy: PrivacyPolicy, plan: TrainingPlan, rounds: int) -> PrivacyPolicy:
        checked = super().validate(policy, plan, rounds)
        check_fraction(checked)
        return checked

    def release(
        self,
        kept: Mapping[str, torch.Tensor],
        policy: PrivacyPolicy,
        plan: TrainingPlan,
        generator: torch.Generator,
    ) -> Released:
        epsilon, clip = float(policy.epsilon or 0.0), float(policy.clip or 0.0)
        sparse, spend = svt_release(
            kept, policy.fraction, epsilon, clip, policy.threshold, generator
        )
        return {}, sparse, spend

    def round_cost(self, policy: PrivacyPolicy, plan: TrainingPlan) -> PrivacySpend:
        return PrivacySpend(
            mechanism=self.name, epsilon=policy.epsilon, accounting=ACCOUNTING, unit=self.unit
        )

    def describe(self, policy: PrivacyPolicy) -> str:
        return (
            f"SVT, fraction {policy.fraction:g}, clip {policy.clip:g}, "
            f"epsilon {policy.epsilon:g} per round (update level)"
        )
