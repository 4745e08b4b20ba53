"""shared.privacy.rdp: the sampled-Gaussian RDP against its defining integral and Opacus."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest
from opacus.accountants.analysis.rdp import compute_rdp
from scipy import integrate

from shared.privacy.rdp import ORDERS, composed_rdp, epsilon_at, step_rdp
from tests.deploy.compose import REPO_ROOT

SETTINGS = [(0.5, 2.38), (0.01, 1.0), (0.1, 0.6), (0.999, 3.0), (0.5, 0.3), (1e-4, 0.8)]
ORDER_SAMPLE = [1.1, 1.5, 2.0, 2.5, 3.0, 3.7, 8.0, 10.9, 32.0, 256.0]


def _quadrature_rdp(q: float, sigma: float, alpha: float) -> float:
    """The RDP's definition, integrated numerically (module docstring of shared.privacy.rdp):
    (1 / (alpha - 1)) log E_{z ~ N(0, s^2)} [((1 - q) + q e^((2z - 1) / (2 s^2)))^alpha]."""

    def log_integrand(z: float) -> float:
        mixture = np.logaddexp(math.log1p(-q), math.log(q) + (2 * z - 1) / (2 * sigma**2))
        return float(-(z**2) / (2 * sigma**2) + alpha * mixture)

    grid = np.linspace(-40 * sigma, 40 * sigma + alpha, 4001)
    peak = max(log_integrand(z) for z in grid)
    value, _ = integrate.quad(
        lambda z: math.exp(log_integrand(z) - peak), grid[0], grid[-1], points=[0.5, alpha],
        limit=500, epsabs=0, epsrel=1e-11,
    )  # fmt: skip
    log_a = peak + math.log(value) - math.log(sigma * math.sqrt(2 * math.pi))
    return log_a / (alpha - 1)


@pytest.mark.parametrize(("q", "sigma"), SETTINGS)
@pytest.mark.parametrize("alpha", [1.5, 2.0, 3.7, 8.0, 12.0])
def test_step_rdp_is_the_defining_integral(q: float, sigma: float, alpha: float) -> None:
    assert step_rdp(sigma, q, alpha) == pytest.approx(_quadrature_rdp(q, sigma, alpha), rel=1e-6)


@pytest.mark.parametrize(("q", "sigma"), SETTINGS)
def test_step_rdp_agrees_with_opacus(q: float, sigma: float) -> None:
    # Opacus drops the fractional series' tail past an absolute cut-off; ours bounds it, so
    # the two part by up to 1e-5 relative where the RDP itself is ~1e-8 (q = 1e-4).
    for alpha in ORDER_SAMPLE:
        theirs = float(compute_rdp(q=q, noise_multiplier=sigma, steps=1, orders=[alpha])[0])
        ours = step_rdp(sigma, q, alpha)
        rel = 1e-7 if float(alpha).is_integer() else 1e-5
        assert ours == pytest.approx(theirs, rel=rel), alpha


def test_full_batch_is_the_plain_gaussian_at_every_order() -> None:
    for alpha in ORDERS:
        assert step_rdp(2.0, 1.0, alpha) == pytest.approx(alpha / 8.0, rel=1e-15)


def test_rdp_grows_with_the_order_and_composes_by_addition() -> None:
    values = [step_rdp(1.1, 0.1, alpha) for alpha in ORDERS]
    assert all(b >= a for a, b in itertools.pairwise(values))
    history = [(1.1, 0.1, 30), (2.0, 1.0, 4)]
    assert composed_rdp(history, 5.0) == pytest.approx(30 * step_rdp(1.1, 0.1, 5.0) + 4 * 5 / 8)


def test_epsilon_is_the_best_balle_conversion_over_the_orders() -> None:
    history, delta = [(1.0, 0.5, 12)], 1e-5
    epsilon, order = epsilon_at(history, delta)

    def convert(a: float) -> float:
        return (
            composed_rdp(history, a)
            + math.log((a - 1) / a)
            - (math.log(delta) + math.log(a)) / (a - 1)
        )

    assert epsilon == pytest.approx(convert(order))
    assert all(convert(a) >= epsilon - 1e-12 for a in ORDERS)
    assert epsilon_at([(1.0, 0.5, 0)], delta)[0] == 0.0


@pytest.mark.parametrize(
    "bad",
    [(0.0, 0.5, 2.0), (math.inf, 0.5, 2.0), (1.0, 0.0, 2.0), (1.0, 1.5, 2.0), (1.0, 0.5, 1.0)],
)
def test_bad_parameters_are_refused(bad: tuple[float, float, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        step_rdp(*bad)


def test_the_accountant_needs_neither_torch_nor_opacus() -> None:
    script = (
        "import sys, importlib.abc\n"
        "class No(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'opacus', 'scipy'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, No())\n"
        "from shared.privacy.accounting import dpsgd_noise_multiplier\n"
        "print(round(dpsgd_noise_multiplier(8.0, 0.5, 48, 1e-5), 3))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT
    )
    assert (result.returncode, result.stdout) == (0, "2.381\n"), result.stderr


@pytest.mark.parametrize(("q", "sigma", "alpha"), [(1e-6, 1.0, 2), (1e-9, 1.0, 2), (1e-4, 0.8, 3)])
def test_integer_orders_keep_their_precision_at_tiny_sample_rates(
    q: float, sigma: float, alpha: int
) -> None:
    import mpmath  # type: ignore[import-untyped]

    mpmath.mp.dps = 60
    exact = sum(
        mpmath.binomial(alpha, k) * (1 - mpmath.mpf(q)) ** (alpha - k) * mpmath.mpf(q) ** k
        * mpmath.e ** (mpmath.mpf(k * k - k) / (2 * mpmath.mpf(sigma) ** 2))
        for k in range(alpha + 1)
    )  # fmt: skip
    assert step_rdp(sigma, q, alpha) == pytest.approx(
        float(mpmath.log(exact) / (alpha - 1)), rel=1e-12
    )


def test_orders_that_cannot_be_evaluated_give_no_bound_instead_of_an_error() -> None:
    assert epsilon_at([(1e-200, 0.5, 10)], 1e-5)[0] == math.inf
    epsilon, order = epsilon_at([(60.0, 0.5, 10)], 1e-5)
    assert 0.0 < epsilon < 1.0
    assert float(order).is_integer()
