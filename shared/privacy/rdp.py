"""Renyi DP of the (Poisson-)sampled Gaussian mechanism and its conversion to (epsilon, delta).

The accountant on both sides of a federation run: the node before it trains (does the run fit
its budget?) and the aggregator when it accepts a run (which sigma reaches the target?).
It needs only numpy, so the aggregator's image carries no training library for it.

One step samples each unit with probability q and adds N(0, sigma^2) to a sum of
sensitivity 1. Its RDP at order alpha is (1 / (alpha - 1)) log A_alpha with

    A_alpha = E_{z ~ N(0, sigma^2)} [((1 - q) + q exp((2z - 1) / (2 sigma^2)))^alpha]

(Mironov, Talwar and Zhang 2019, "Renyi Differential Privacy of the Sampled Gaussian
Mechanism", Sec. 3). For an integer alpha the binomial theorem and the Gaussian moment
generating function give it exactly as a finite sum,

    A_alpha = sum_{k=0}^{alpha} C(alpha, k) (1 - q)^(alpha - k) q^k exp((k^2 - k) / (2 sigma^2)),

evaluated here in log space. For a fractional alpha the integral is split at z0, where
q exp((2z - 1) / (2 sigma^2)) = 1 - q; on each side the smaller term is expanded by the
generalised binomial series (absolutely convergent there), and each term is a Gaussian
moment over a half line, hence an erfc factor (Mironov, Talwar and Zhang 2019, Sec. 3.3).
Past k = alpha + 1 the terms alternate in sign and shrink polynomially, so the series
stops once a term would change log A_alpha by less than 1e-8 of itself and that term is
added: an upper bound. At
q = 1 the mechanism is the plain Gaussian, with RDP alpha / (2 sigma^2) at every order.

RDP composes by addition over steps at each order; the (epsilon, delta) guarantee is the
best over the orders of Balle et al. 2020 (Theorem 21):
epsilon = rdp + log((alpha - 1) / alpha) - (log delta + log alpha) / (alpha - 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache

import numpy as np
import numpy.typing as npt

ORDERS: tuple[float, ...] = (
    *(1.0 + x / 10.0 for x in range(1, 100)),
    *(float(a) for a in range(11, 65)),
    *(72.0, 80.0, 96.0, 128.0, 192.0, 256.0, 384.0, 512.0, 768.0, 1024.0),
)
"""Orders the bound is optimised over: fine steps where large epsilons are tightest, up to
1024 so that small noise multipliers stay tight too."""

RdpStep = tuple[float, float, int]
"""(noise multiplier in sensitivity units, sample rate, steps): one history entry."""


@cache
def _log_binomials(order: int) -> npt.NDArray[np.float64]:
    k = np.arange(order + 1, dtype=np.float64)
    lgamma = np.vectorize(math.lgamma, otypes=[np.float64])
    return np.asarray(lgamma(order + 1.0) - lgamma(k + 1.0) - lgamma(order - k + 1.0))


@cache
def _integer_log_a(sigma: float, q: float, order: int) -> float:
    """log A_alpha as log1p(A_alpha - 1), with A - 1 summed from positive terms only.

    The binomial weights sum to 1 and the k = 0, 1 terms have exponent 0, so
    A - 1 = sum_{k>=2} C(alpha, k) (1 - q)^(alpha - k) q^k (exp((k^2 - k) / (2 sigma^2)) - 1):
    no cancellation, so a tiny A - 1 (small q) keeps its precision.
    """
    k = np.arange(2, order + 1, dtype=np.float64)
    with np.errstate(all="ignore"):  # extreme sigmas give inf or nan, refused below
        exponent = (k * k - k) / (2.0 * sigma * sigma)
        # log(e^x - 1) = x + log(1 - e^-x), safe for every finite x > 0
        log_excess = exponent + np.log(-np.expm1(-exponent))
        terms = (
            _log_binomials(order)[2:] + (order - k) * math.log1p(-q) + k * math.log(q) + log_excess
        )
        peak = float(terms.max())
        log_excess_total = peak + math.log(float(np.exp(terms - peak).sum()))
    if not math.isfinite(log_excess_total):
        raise ArithmeticError(f"RDP at order {order} overflows at sigma {sigma}, q {q}")
    if log_excess_total < 0.0:
        return math.log1p(math.exp(log_excess_total))
    return log_excess_total + math.log1p(math.exp(-log_excess_total))


def _log_erfc(x: float) -> float:
    """log erfc(x), also where erfc(x) underflows (asymptotic series, relative error < 1e-12)."""
    if x < 20.0:
        return math.log(math.erfc(x))
    inv = 1.0 / (2.0 * x * x)
    return -x * x - math.log(x * math.sqrt(math.pi)) + math.log1p(-inv + 3 * inv**2 - 15 * inv**3)


_TAIL = 1e-8
"""The fractional series stops once a term would move log A_alpha by less than this fraction."""
_MAX_TERMS = 20_000


@cache
def _fractional_log_a(sigma: float, q: float, order: float) -> float:
    z0 = sigma * sigma * math.log(1.0 / q - 1.0) + 0.5
    scale, two_var = math.sqrt(2.0) * sigma, 2.0 * sigma * sigma
    log_q, log_p, log_half = math.log(q), math.log1p(-q), math.log(0.5)
    total = 0.0  # the series' sum so far, relative to exp(reference)
    reference: float | None = None
    log_coef, sign, previous = 0.0, 1.0, math.inf
    for k in range(_MAX_TERMS):
        j = order - k
        below = log_coef + j * log_p + k * log_q + (k * k - k) / two_var
        above = log_coef + j * log_q + k * log_p + (j * j - j) / two_var
        below += log_half + _log_erfc((k - z0) / scale)
        above += log_half + _log_erfc((z0 - j) / scale)
        if reference is None:
            reference = max(below, above)
        size = math.exp(below - reference) + math.exp(above - reference)
        if (
            k > order + 1
            and size <= previous
            and size < _TAIL * total * _log_or_one(total, reference)
        ):
            # From here the terms alternate in sign and shrink: the rest of the series is
            # at most this term in size; adding it keeps the result an upper bound.
            return reference + math.log(total + size)
        total += sign * size
        previous = size
        ratio = (order - k) / (k + 1)
        sign = sign if ratio > 0 else -sign
        log_coef += math.log(abs(ratio))
    raise ArithmeticError(f"RDP series did not converge at order {order}, sigma {sigma}, q {q}")


def _log_or_one(total: float, reference: float) -> float:
    """|log A| from the partial sum, capped at 1.

    Below 1, a term's share of A is its share of log A.
    """
    if total <= 0.0:
        return 1.0
    return min(1.0, abs(reference + math.log(total)))


def step_rdp(sigma: float, q: float, order: float) -> float:
    """RDP at ``order`` of one sampled Gaussian step (module docstring: the formula).

    ValueError for parameters out of range; ArithmeticError where float64 cannot evaluate
    the order (an extreme sigma), which callers treat as "no bound at this order".
    """
    if not 0.0 < sigma < math.inf:
        raise ValueError(f"noise_multiplier must be a finite number > 0, got {sigma}")
    if not 0.0 < q <= 1.0:
        raise ValueError(f"sample_rate must be in (0, 1], got {q}")
    if not order > 1.0:
        raise ValueError(f"RDP order must be > 1, got {order}")
    if q == 1.0:
        return order / (2.0 * sigma * sigma)
    try:
        if float(order).is_integer():
            log_a = _integer_log_a(sigma, q, int(order))
        else:
            log_a = _fractional_log_a(sigma, q, order)
    except ValueError as err:  # a math domain error inside the series
        raise ArithmeticError(f"RDP at order {order} cannot be evaluated: {err}") from err
    return max(log_a, 0.0) / (order - 1.0)


def composed_rdp(history: Sequence[RdpStep], order: float) -> float:
    """RDP at ``order`` of every step of every entry in ``history``, composed."""
    total = 0.0
    for sigma, rate, steps in history:
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        if steps:
            try:
                total += steps * step_rdp(sigma, rate, order)
            except ArithmeticError:
                return math.inf  # this order cannot be evaluated: it gives no bound
    return total


def epsilon_at(history: Sequence[RdpStep], delta: float) -> tuple[float, float]:
    """(epsilon, best order) at ``delta`` for the composition of ``history``."""
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if not any(steps for _, _, steps in history):
        return 0.0, ORDERS[0]
    best, best_order = math.inf, ORDERS[0]
    for order in ORDERS:
        rdp = composed_rdp(history, order)
        if not math.isfinite(rdp):
            continue
        epsilon = (
            rdp
            + math.log((order - 1.0) / order)
            - (math.log(delta) + math.log(order)) / (order - 1.0)
        )
        if epsilon < best:
            best, best_order = epsilon, order
    return max(best, 0.0), best_order
