"""shared.privacy.accounting against Google's dp-accounting (RDP and PLD) and the RDP integral."""

from __future__ import annotations

import math

import dp_accounting  # type: ignore[import-untyped]
import numpy as np
import pytest
from dp_accounting import pld, rdp
from opacus.accountants.analysis.rdp import compute_rdp
from scipy import integrate

from shared.privacy.accounting import (
    ALPHAS,
    RDP_METHOD,
    compose,
    dpsgd_epsilon,
    dpsgd_noise_multiplier,
)
from shared.privacy.gaussian import gaussian_spend
from shared.schemas import Mechanism, PrivacySpend, PrivacyUnit

RDP_REL = 5e-3
"""Ours may lie this far below dp-accounting's RdpAccountant on the same orders, and never
above it (by more than 1e-9 relative, rounding): its series for the small fractional orders
(1.1 to 1.8) fails to converge at q = 0.5 and it drops them, which loosens its bound (the
demo's point: ours 0.39% below); elsewhere the two agree within 0.11%."""
RDP_ROUNDING = 1e-9
PLD_REL = 1e-3
"""Ours may not fall below dp-accounting's PLD epsilon (a tighter upper bound, pessimistic
discretisation 1e-4) by more than this: it never did (seen 7.6% to 15% above)."""
PLD_LOOSENESS = 1.2
"""...and should not be looser than 1.2 x PLD either, or RDP has been mis-converted."""

POINTS = [
    # (q, sigma, steps, delta): the demo's default run (q 0.5, target epsilon 8 over 4 rounds
    # of 12 steps gives sigma 2.3809), and settings across the range a node may log.
    (0.5, 2.380859375, 48, 1e-5),
    (0.5, 1.0, 12, 1e-5),
    (0.1, 1.1, 100, 1e-5),
    (0.01, 1.0, 1000, 1e-5),
    (1.0, 2.0, 10, 1e-5),
    (0.05, 0.6, 200, 1e-6),
    (0.5, 5.0, 48, 1e-5),
]
"""Figures (ours / dp-accounting RDP / PLD): 7.9959/8.0269/7.3652 (demo), 12.655/12.667/
11.495, 6.6137/6.6208/5.9127, 2.1014/2.1014/1.8282, 8.0794/8.0794/7.5113, 19.776/19.793/
17.679, 3.2357/3.2361/2.9733."""


def _event(q: float, sigma: float, steps: int) -> dp_accounting.DpEvent:
    step = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma))
    return dp_accounting.SelfComposedDpEvent(step, steps)


def _google_rdp(event: dp_accounting.DpEvent, delta: float) -> float:
    accountant = rdp.RdpAccountant(orders=list(ALPHAS))
    accountant.compose(event)
    return float(accountant.get_epsilon(delta))


def _google_pld(event: dp_accounting.DpEvent, delta: float) -> float:
    accountant = pld.PLDAccountant(value_discretization_interval=1e-4)
    accountant.compose(event)
    return float(accountant.get_epsilon(delta))


def _sampled_gaussian_rdp(q: float, sigma: float, alpha: float) -> float:
    """RDP of one sampled Gaussian step at order alpha from its definition, by quadrature:
    (1 / (alpha - 1)) log E_{z ~ N(0, sigma^2)} [((1 - q) + q exp((2z - 1) / (2 sigma^2)))^alpha]
    (Mironov, Talwar and Zhang 2019, Sec. 3: D_alpha((1 - q) N(0) + q N(1) || N(0)))."""

    def density(z: float) -> float:
        mixture = np.logaddexp(math.log1p(-q), math.log(q) + (2 * z - 1) / (2 * sigma**2))
        return math.exp(-(z**2) / (2 * sigma**2) + alpha * mixture) / (
            sigma * math.sqrt(2 * math.pi)
        )

    value, _ = integrate.quad(
        density, -40 * sigma, alpha + 40 * sigma, points=[0.0, 0.5, alpha], limit=1000,
        epsabs=0.0, epsrel=1e-13,
    )  # fmt: skip
    return math.log(value) / (alpha - 1)


@pytest.mark.parametrize(("q", "sigma", "steps", "delta"), POINTS)
def test_dpsgd_epsilon_matches_dp_accounting_rdp(
    q: float, sigma: float, steps: int, delta: float
) -> None:
    ours = dpsgd_epsilon(sigma, q, steps, delta)
    google = _google_rdp(_event(q, sigma, steps), delta)
    assert google * (1 - RDP_REL) <= ours <= google * (1 + RDP_ROUNDING)


@pytest.mark.parametrize(("q", "sigma", "steps", "delta"), POINTS)
def test_dpsgd_epsilon_is_never_below_pld(q: float, sigma: float, steps: int, delta: float) -> None:
    ours = dpsgd_epsilon(sigma, q, steps, delta)
    tight = _google_pld(_event(q, sigma, steps), delta)
    assert tight * (1 - PLD_REL) <= ours <= tight * PLD_LOOSENESS


@pytest.mark.parametrize(
    ("q", "sigma", "steps", "delta"), [(0.5, 0.8, 48, 1e-3), (0.25, 1.5, 120, 1e-4)]
)
def test_dpsgd_epsilon_small_fractional_orders_are_exact(
    q: float, sigma: float, steps: int, delta: float
) -> None:
    """Here dp-accounting's series for orders 1.1 to 1.7 does not converge and it drops them,
    so its RDP epsilon is looser (33.90 vs our 31.57; 10.534 vs 10.386). Ours uses them: each
    per-step RDP equals the definition's integral (rtol 1e-9; seen 1e-12), and the epsilon
    stays between PLD (28.24; 9.395) and dp-accounting's RDP."""
    fractional = [a for a in ALPHAS if a < 2.0]
    ours_rdp = compute_rdp(q=q, noise_multiplier=sigma, steps=1, orders=fractional)
    integral = [_sampled_gaussian_rdp(q, sigma, a) for a in fractional]
    np.testing.assert_allclose(ours_rdp, integral, rtol=1e-9, atol=0.0)
    ours = dpsgd_epsilon(sigma, q, steps, delta)
    event = _event(q, sigma, steps)
    assert _google_pld(event, delta) <= ours <= _google_rdp(event, delta)


@pytest.mark.parametrize(
    ("target", "q", "steps", "delta"),
    [(8.0, 0.5, 48, 1e-5), (1.0, 0.02, 500, 1e-5), (3.0, 0.1, 200, 1e-6)],
)
def test_dpsgd_noise_multiplier_reaches_the_target_from_above(
    target: float, q: float, steps: int, delta: float
) -> None:
    sigma = dpsgd_noise_multiplier(target, q, steps, delta)
    assert dpsgd_epsilon(sigma, q, steps, delta) <= target
    assert dpsgd_epsilon(sigma - 1e-3, q, steps, delta) > target  # the smallest, within 1e-3
    assert _google_rdp(_event(q, sigma, steps), delta) <= target * (1 + RDP_REL)
    assert _google_pld(_event(q, sigma, steps), delta) <= target


def _dpsgd_spend(sigma: float, q: float, steps: int) -> PrivacySpend:
    return PrivacySpend(
        mechanism=Mechanism.DPSGD,
        epsilon=dpsgd_epsilon(sigma, q, steps, 1e-5),
        delta=1e-5,
        accounting="test",
        unit=PrivacyUnit.PATIENT,
        parameters={"noise_multiplier": sigma, "sample_rate": q, "steps": steps},
    )


def test_compose_mixed_spends_adds_pure_epsilon_to_one_rdp_composition() -> None:
    """Two DP-SGD rounds, an update-level Gaussian (sigma 4 over sensitivity 2: sigma 2, q 1)
    and a pure 0.5-DP SVT round: 0.5 + the RDP epsilon of all the Gaussians together."""
    svt = PrivacySpend(mechanism=Mechanism.SVT, epsilon=0.5, accounting="svt")
    spends = [
        _dpsgd_spend(1.2, 0.1, 30),
        _dpsgd_spend(2.0, 0.5, 12),
        gaussian_spend(4.0, 3, 1e-5),
        svt,
    ]
    total = compose(spends, target_delta=1e-5)
    together = dp_accounting.ComposedDpEvent(
        [_event(0.1, 1.2, 30), _event(0.5, 2.0, 12), _event(1.0, 2.0, 3)]
    )
    assert total.epsilon is not None
    assert total.epsilon == pytest.approx(0.5 + _google_rdp(together, 1e-5), rel=RDP_REL)
    assert total.epsilon < 0.5 + sum(float(s.epsilon or 0.0) for s in spends[:3])  # RDP pays
    assert (total.delta, total.releases) == (1e-5, 4)
    assert total.accounting == (
        f"basic composition, {RDP_METHOD} at delta 1e-05 for Gaussian releases"
    )


def test_compose_equal_dpsgd_rounds_equal_one_long_round() -> None:
    rounds = compose([_dpsgd_spend(1.5, 0.2, 25)] * 4, target_delta=1e-5)
    assert rounds.epsilon == dpsgd_epsilon(1.5, 0.2, 100, 1e-5)


def test_compose_a_release_without_dp_is_unbounded() -> None:
    exact = PrivacySpend(mechanism=Mechanism.NONE, epsilon=None, accounting="none")
    total = compose([_dpsgd_spend(1.0, 0.1, 10), exact], target_delta=1e-5)
    assert (total.epsilon, total.releases) == (None, 2)
    assert total.accounting == "unbounded: a release carried no DP guarantee"
