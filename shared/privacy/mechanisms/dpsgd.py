"""Patient-level DP-SGD as a mechanism: the node trains privately; the delta is post-processing."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from shared.errors import ConfigurationError
from shared.privacy.accounting import RDP_METHOD, dpsgd_epsilon, dpsgd_noise_multiplier
from shared.privacy.mechanisms.base import PrivacyMechanism, Released
from shared.schemas import Mechanism, PrivacyPolicy, PrivacySpend, PrivacyUnit, TrainingPlan

ACCOUNTING = f"{RDP_METHOD}, Poisson-sampled Gaussian per step (Abadi et al. 2016)"


MIN_SAMPLE_RATE = 1e-4
"""Below this the RDP series' sums sit too close to 1 for float64 (and no site samples so
few patients per step)."""
SIGMA_RANGE = (1e-2, 1e4)
"""Noise multipliers the accountant handles exactly; outside, a policy is refused."""


class PatientDpSgd(PrivacyMechanism):
    """DP-SGD with patients as the privacy unit (Abadi et al., CCS 2016).

    Every step Poisson-samples patients with rate q (``sample_rate``), clips each sampled
    patient's gradient to L2 norm C (``l2_clip``) and adds N(0, (sigma C)^2) to the sum
    (services.node.dpsgd_training). A round is ``plan.max_steps`` such steps; the node's
    ledger composes every step of every round in RDP. The delta that leaves the node is a
    function of the noisy gradients only, so sending it costs nothing more (post-processing,
    Dwork and Roth 2014, Prop. 2.1); it is sent dense (``fraction`` does not apply).
    """

    name = Mechanism.DPSGD
    unit = PrivacyUnit.PATIENT
    differentially_private = True
    trains_privately = True
    settings = frozenset({"noise_multiplier", "l2_clip", "sample_rate", "target_epsilon"})
    required = (("sample_rate", "sample_rate (q)"), ("l2_clip", "l2_clip (C)"))
    citation = "Abadi et al., CCS 2016; Mironov, Talwar and Zhang 2019"

    def validate(self, policy: PrivacyPolicy, plan: TrainingPlan, rounds: int) -> PrivacyPolicy:
        """Check the settings and fill in sigma from ``target_epsilon`` over the whole run."""
        checked = super().validate(policy, plan, rounds)
        if plan.max_steps is None:
            raise ConfigurationError(
                "the dpsgd mechanism needs plan.max_steps (the DP-SGD steps per round), "
                "but the plan has max_steps=None"
            )
        if plan.local_epochs != 1:
            raise ConfigurationError(
                "the dpsgd mechanism counts steps, not epochs: set plan.local_epochs=1 and "
                f"plan.max_steps, but the plan has local_epochs={plan.local_epochs}"
            )
        q, steps = float(checked.sample_rate or 0.0), plan.max_steps * rounds
        sigma, target = checked.noise_multiplier, checked.target_epsilon
        if q < MIN_SAMPLE_RATE:
            raise ConfigurationError(
                f"sample_rate {q:g} is below {MIN_SAMPLE_RATE:g}, where the accountant loses "
                "precision; sample more patients per step"
            )
        if sigma is not None and not SIGMA_RANGE[0] <= sigma <= SIGMA_RANGE[1]:
            raise ConfigurationError(
                f"noise_multiplier {sigma:g} is outside [{SIGMA_RANGE[0]:g}, {SIGMA_RANGE[1]:g}]"
            )
        if sigma is None and target is None:
            raise ConfigurationError(
                "the dpsgd mechanism needs noise_multiplier (sigma) or target_epsilon, "
                "but the policy has neither"
            )
        if sigma is None:
            assert target is not None
            try:
                sigma = dpsgd_noise_multiplier(target, q, steps, checked.delta)
            except ValueError as err:
                raise ConfigurationError(str(err)) from err
            return checked.model_copy(update={"noise_multiplier": sigma})
        if target is not None:
            whole = dpsgd_epsilon(sigma, q, steps, checked.delta)
            if whole > target:
                raise ConfigurationError(
                    f"noise_multiplier {sigma:g} gives a whole-run epsilon of {whole:.4g} "
                    f"over {rounds} rounds of {plan.max_steps} steps, above target_epsilon "
                    f"{target:g}"
                )
        return checked

    def release(
        self,
        kept: Mapping[str, torch.Tensor],
        policy: PrivacyPolicy,
        plan: TrainingPlan,
        generator: torch.Generator,
    ) -> Released:
        return {name: t.detach() for name, t in kept.items()}, {}, self.round_cost(policy, plan)

    def round_cost(self, policy: PrivacyPolicy, plan: TrainingPlan) -> PrivacySpend:
        sigma, q = float(policy.noise_multiplier or 0.0), float(policy.sample_rate or 0.0)
        steps = int(plan.max_steps or 0)
        return PrivacySpend(
            mechanism=self.name,
            epsilon=dpsgd_epsilon(sigma, q, steps, policy.delta),
            delta=policy.delta,
            accounting=ACCOUNTING,
            unit=self.unit,
            parameters={
                "noise_multiplier": sigma,
                "sample_rate": q,
                "steps": steps,
                "l2_clip": policy.l2_clip,
                "normaliser": plan.batch_size,
            },
        )

    def describe(self, policy: PrivacyPolicy) -> str:
        target = (
            f", whole-run target epsilon {policy.target_epsilon:g}" if policy.target_epsilon else ""
        )
        return (
            f"patient-level DP-SGD, sample rate {policy.sample_rate:g}, sigma "
            f"{policy.noise_multiplier:.4g}, clip {policy.l2_clip:g}, "
            f"delta {policy.delta:g}{target}"
        )
