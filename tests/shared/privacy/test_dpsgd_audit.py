"""An empirical privacy audit of one DP-SGD step: a canary patient, a threshold test, bounds.

Jagielski, Ullman and Oprea, "Auditing Differentially Private Machine Learning: How Private
is Private SGD?" (NeurIPS 2020); Nasr et al., "Adversary Instantiation: Lower Bounds for
Differentially Private Machine Learning" (IEEE S&P 2021). An (epsilon, delta)-DP mechanism
M must satisfy, for neighbouring D, D' and any test (reject "D" when the output lands in S),
FPR + e^epsilon FNR >= 1 - delta and FNR + e^epsilon FPR >= 1 - delta (Kairouz, Oh and
Viswanath 2015). With Clopper-Pearson upper bounds on both error rates, each at one-sided
confidence 97.5% (95% jointly), epsilon >= log((1 - delta - FNR_u) / FPR_u) and the
symmetric form: an empirical lower bound that must never exceed the claim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from scipy.stats import beta

from shared.privacy.accounting import dpsgd_epsilon
from shared.privacy.dpsgd import (
    clip_and_sum,
    noisy_mean,
    per_sample_gradients,
    poisson_sample,
    set_flat_gradient_,
)

Q = 0.5
"""Each patient's, the canary's included, probability of being in the step."""
CLIP = 1.0
NORMALISER = 2
DELTA = 1e-5
CONFIDENCE_TAIL = 0.025
"""Each Clopper-Pearson bound fails with probability at most 2.5%: 95% for both together."""
OTHERS = torch.tensor([[0.5, 0.0], [0.4, 0.0], [0.7, 0.0], [0.2, 0.0]])
"""The patients of D: their gradients push the first parameter only."""
CANARY = torch.tensor([[0.0, 10.0]])
"""The patient D' adds: a gradient 10 C long along the second parameter, clipped to C."""
TRIALS = 8000
"""Steps per world and half: threshold chosen on the first half, bounds from the second."""

Scores = npt.NDArray[np.float64]


class _Linear(torch.nn.Module):
    """Two weights, loss w . x: a patient's gradient is its x."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.weight).sum(dim=-1)


def _loss(output: torch.Tensor, _target: torch.Tensor) -> torch.Tensor:
    return output.sum()


def _final_parameters(
    patients: torch.Tensor,
    trials: int,
    sigma: float,
    sampling: torch.Generator,
    noise: torch.Generator,
    *,
    clip: bool = True,
) -> Scores:
    """Run `trials` independent one-step DP-SGD trainings (SGD, lr 1, from w = 0) on
    `patients` [n, 2] with the real sampling, clipping and noise of shared.privacy.dpsgd;
    the score of each is -w_2 after the step. ``clip=False`` is a deliberately leaky step."""
    model = _Linear()
    per_sample = per_sample_gradients(model, _loss, patients, torch.zeros(len(patients)))
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scores = np.empty(trials)
    for trial in range(trials):
        with torch.no_grad():
            model.weight.zero_()
        members = poisson_sample(len(patients), Q, sampling)
        rows = per_sample[members]
        summed = clip_and_sum(rows, CLIP) if clip else rows.sum(dim=0)
        optimizer.zero_grad(set_to_none=True)
        set_flat_gradient_(model, noisy_mean(summed, sigma, CLIP, NORMALISER, noise))
        optimizer.step()
        scores[trial] = -float(model.weight.detach()[1])
    return scores


def _upper(errors: int, trials: int) -> float:
    """Clopper-Pearson (1934) one-sided upper bound at 1 - CONFIDENCE_TAIL on a rate."""
    if errors >= trials:
        return 1.0
    return float(beta.ppf(1.0 - CONFIDENCE_TAIL, errors + 1, trials - errors))


def _bound(without: Scores, with_canary: Scores, threshold: float, form: int) -> float:
    """Epsilon lower bound of the test "canary present when score > threshold"."""
    false_positive = _upper(int((without > threshold).sum()), len(without))
    false_negative = _upper(int((with_canary <= threshold).sum()), len(with_canary))
    first, second = (
        (false_negative, false_positive) if form == 0 else (false_positive, false_negative)
    )
    numerator = 1.0 - DELTA - first
    return math.log(numerator / second) if numerator > 0.0 and second > 0.0 else 0.0


@dataclass(frozen=True)
class Audit:
    lower_bound: float
    threshold: float
    claim: float


def _audit(sigma: float, seed: int, trials: int = TRIALS, *, clip: bool = True) -> Audit:
    """Both worlds, 2 x `trials` steps each; the test (threshold and form) that is best on
    the first halves is scored on the second halves, so the bound is not selection-biased."""
    sampling, noise = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    d_prime = torch.cat([OTHERS, CANARY])
    without = _final_parameters(OTHERS, 2 * trials, sigma, sampling, noise, clip=clip)
    with_canary = _final_parameters(d_prime, 2 * trials, sigma, sampling, noise, clip=clip)
    scale = sigma * CLIP / NORMALISER  # the noise std of the score
    candidates = [(float(t), form) for t in np.linspace(-2.0, 8.0, 201) * scale for form in (0, 1)]
    threshold, form = max(
        candidates, key=lambda c: _bound(without[:trials], with_canary[:trials], *c)
    )
    return Audit(
        lower_bound=_bound(without[trials:], with_canary[trials:], threshold, form),
        threshold=threshold,
        claim=dpsgd_epsilon(sigma, Q, 1, DELTA),
    )


def test_dpsgd_audit_lower_bound_stays_below_the_claim() -> None:
    """sigma 1, q 0.5, one step: claim 3.89 at delta 1e-5 (PLD: 3.53); the bound found is 1.41
    (seed 0; threshold 2.85 noise sds), limited by 8000 trials and the canary's 50% absence."""
    audit = _audit(sigma=1.0, seed=0)
    assert audit.claim == dpsgd_epsilon(1.0, 0.5, 1, 1e-5)
    assert 1.0 < audit.lower_bound <= audit.claim


def test_dpsgd_audit_is_not_vacuous_with_almost_no_noise() -> None:
    """sigma 1e-3: the canary is seen whenever sampled (half the steps), so FNR_u ~ 0.52 and
    FPR_u = 3.69 / n: the bound log(0.48 n / 3.69) is 5.56 at n = 2000 (seed 1), which a leak
    at the usual sigma would show; the claim (5.5e5) is larger still."""
    audit = _audit(sigma=1e-3, seed=1, trials=2000)
    assert audit.lower_bound > 5.0
    assert audit.lower_bound <= audit.claim


def test_dpsgd_audit_detects_a_step_that_skips_clipping() -> None:
    """The same step without clipping: the canary's gradient (10 C) moves the score by 10
    noise sds, and the bound (6.97, seed 2) breaks the claim (3.89) clipping would have earned."""
    audit = _audit(sigma=1.0, seed=2, clip=False)
    assert audit.lower_bound > audit.claim
