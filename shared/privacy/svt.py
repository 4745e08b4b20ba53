"""Sparse Vector Technique release of a weight delta: epsilon-DP per round (Lyu et al. 2017)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from shared.privacy.partial import FlatLayout, float_flat, share_count
from shared.privacy.types import SparseTensor
from shared.schemas import Mechanism, PrivacySpend

ACCOUNTING = "SVT (Lyu et al. 2017, Alg. 1) + Laplace release, sequential composition"
RELEASE_SHARE = 0.5
"""Fraction of the per-round epsilon spent on the released values (epsilon_3)."""


@dataclass(frozen=True)
class SvtBudget:
    """The split of one round's epsilon = eps1 (threshold) + eps2 (queries) + eps3 (values)."""

    eps1: float
    eps2: float
    eps3: float

    @property
    def epsilon(self) -> float:
        return self.eps1 + self.eps2 + self.eps3


def svt_budget(epsilon: float, c: int) -> SvtBudget:
    """Split ``epsilon`` for at most ``c`` released components.

    eps3 = RELEASE_SHARE * epsilon pays for the released values; the rest is split
    eps1 : eps2 = 1 : (2c)^(2/3), the allocation Lyu et al. (2017, Sec. 4.2) derive for
    non-monotonic queries (it minimises the variance of the noisy comparison).
    """
    if not epsilon > 0.0 or epsilon == float("inf"):
        raise ValueError(f"epsilon must be a finite number > 0, got {epsilon}")
    if c < 1:
        raise ValueError(f"c must be >= 1, got {c}")
    eps3 = RELEASE_SHARE * epsilon
    eps1 = (epsilon - eps3) / (1.0 + (2.0 * c) ** (2.0 / 3.0))
    return SvtBudget(eps1=eps1, eps2=epsilon - eps3 - eps1, eps3=eps3)


def default_threshold(fraction: float, clip: float) -> float:
    """T = (1 - fraction) * gamma: the (1 - fraction)-quantile of |clip(x)| were it uniform.

    A function of public settings only, so it costs no privacy. It is the threshold under
    which a fraction ``fraction`` of components would pass without noise if clipped
    magnitudes were spread evenly over [0, gamma]; set ``threshold`` explicitly when the
    real distribution is known from public data.
    """
    return (1.0 - fraction) * clip


def svt_release(
    delta: Mapping[str, torch.Tensor],
    fraction: float,
    epsilon: float,
    clip: float,
    threshold: float | None,
    generator: torch.Generator,
) -> tuple[dict[str, SparseTensor], PrivacySpend]:
    """Select and release at most c = ceil(fraction * n) components with epsilon-DP.

    Lyu, Su and Li, "Understanding the Sparse Vector Technique for Differential Privacy",
    PVLDB 10(6), 2017: Alg. 1 for the selection, with numeric outputs as in their Alg. 7.
    All n components of all tensors form one query stream.

    Neighbouring relation (update level): two updates x, x' whose clipped components
    clip(x_i) = max(-gamma, min(gamma, x_i)) may differ arbitrarily. Then

    - query q_i = |clip(x_i)| lies in [0, gamma]: sensitivity Delta_q = gamma;
    - released value clip(x_i) lies in [-gamma, gamma]: sensitivity Delta_r = 2 * gamma.

    Mechanism, with eps1 + eps2 + eps3 = epsilon (see ``svt_budget``):

    1. rho ~ Lap(Delta_q / eps1), drawn once; noisy threshold T + rho.
    2. nu_i ~ Lap(2 c Delta_q / eps2) per query (the non-monotonic scale: some q_i may rise
       while others fall); component i passes when q_i + nu_i >= T + rho.
    3. If more than c pass, a uniformly random c of them are kept. This is exactly Alg. 1
       run over the queries in a uniformly random, data-independent order, stopping at the
       c-th positive; Alg. 1 is eps1 + eps2 -DP for every fixed order, hence for the mix.
    4. Each kept component is released as clip(x_i) + Lap(c Delta_r / eps3): the Laplace
       mechanism (Dwork and Roth 2014, Thm. 3.6) at eps3 / c, at most c times, is eps3 -DP
       by sequential composition (Dwork and Roth 2014, Thm. 3.16; Lyu et al. Alg. 7).
       Clipping comes first; the noisy value is not clipped again (re-clipping would keep
       DP, being post-processing, but would bias the value).

    Components not kept are not sent at all. Total: epsilon-DP (delta = 0) for this round;
    the ledger composes rounds. Every Laplace draw comes from float64 uniforms (53-bit
    quantile steps); like most deployed DP code this is floating-point Laplace sampling,
    not an exact sampler (Mironov 2012).

    delta: name -> float tensor of any shape (0-dim is one component), finite values.
    Returns: name -> SparseTensor for every input tensor (float32 values, int64 positions),
    and this round's PrivacySpend; its parameters hold only public settings.
    """
    return _svt_release(delta, fraction, epsilon, clip, threshold, generator, noise=True)


def _svt_release(
    delta: Mapping[str, torch.Tensor],
    fraction: float,
    epsilon: float,
    clip: float,
    threshold: float | None,
    generator: torch.Generator,
    *,
    noise: bool,
) -> tuple[dict[str, SparseTensor], PrivacySpend]:
    """``svt_release``; ``noise=False`` (tests only) turns every Laplace draw into zero."""
    if not clip > 0.0 or clip == float("inf"):
        raise ValueError(f"clip (gamma) must be a finite number > 0, got {clip}")
    if threshold is not None and not abs(threshold) < float("inf"):
        raise ValueError(f"threshold must be finite or None, got {threshold}")
    layout = FlatLayout.of(delta)
    flats = [float_flat(t, name) for name, t in delta.items()]
    c = share_count(fraction, layout.n)
    tau = default_threshold(fraction, clip) if threshold is None else float(threshold)
    if c == 0:  # nothing to release: no data is touched, nothing is spent
        svt_budget(epsilon, 1)  # still validates epsilon
        nothing = {
            name: SparseTensor(torch.empty(0, dtype=torch.int64), torch.empty(0), shape)
            for name, shape in zip(layout.names, layout.shapes, strict=True)
        }
        return nothing, _spend(epsilon=0.0, c=0, n=0, clip=clip, tau=tau, budget=None)
    budget = svt_budget(epsilon, c)

    rho = _laplace(1, clip / budget.eps1, generator, torch.float64).item() if noise else 0.0
    passes = _passing(flats, clip, tau + rho, 2 * c * clip / budget.eps2, generator, noise)
    thin_(passes, c, generator)  # more than c passed: keep a uniformly random c
    hits = layout.local(passes.nonzero().squeeze(1))
    passed = sum(h.numel() for h in hits.values())

    release_scale = c * 2.0 * clip / budget.eps3
    if noise:
        release_noise = _laplace(passed, release_scale, generator, torch.float64)
    else:
        release_noise = torch.zeros(passed, dtype=torch.float64)
    sparse: dict[str, SparseTensor] = {}
    start = 0
    for name, shape, flat in zip(layout.names, layout.shapes, flats, strict=True):
        positions = hits[name]
        stop = start + positions.numel()
        values = flat[positions].clamp_(-clip, clip).to(torch.float64)
        values.add_(release_noise[start:stop])
        sparse[name] = SparseTensor(positions, values.to(torch.float32), shape)
        start = stop
    return sparse, _spend(epsilon=epsilon, c=c, n=layout.n, clip=clip, tau=tau, budget=budget)


def thin_(mask: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Keep a uniformly random k of the m True entries of ``mask`` bool [n], in place.

    Nothing changes when m <= k. Avoids permuting all m entries (slow for millions): an
    independent Bernoulli draw keeps a superset of about k + 6 sqrt(k) of them, and a
    uniformly random few of those are then dropped, recursively, to leave exactly k. Every
    step is symmetric under relabelling the m entries, so the result is uniform over all
    k-subsets, exactly.
    """
    m = int(torch.count_nonzero(mask))
    if m <= k:
        return mask
    if m <= _SMALL_SUBSET:
        chosen = mask.nonzero().squeeze(1)
        mask[chosen[torch.randperm(m, generator=generator)[k:]]] = False
        return mask
    p = min(1.0, (k + 6.0 * k**0.5 + 16.0) / m)
    coins = torch.empty_like(mask)
    uniform = torch.empty(min(mask.numel(), _CHUNK))  # drawn in chunks: no n-float buffer
    while True:  # falls short of k with probability ~1e-9 per try
        for start in range(0, mask.numel(), _CHUNK):
            part = slice(start, start + _CHUNK)
            u = uniform[: coins[part].numel()].uniform_(generator=generator)
            torch.lt(u, p, out=coins[part])
        kept = int(torch.count_nonzero(coins.logical_and_(mask)))
        if kept >= k:
            break
    chosen = coins.nonzero().squeeze(1)
    drop = thin_(torch.ones(kept, dtype=torch.bool), kept - k, generator)
    coins[chosen[drop]] = False
    return mask.copy_(coins)


_SMALL_SUBSET = 1 << 18
_CHUNK = 1 << 18


def _passing(
    flats: list[torch.Tensor],
    clip: float,
    noisy_threshold: float,
    query_scale: float,
    generator: torch.Generator,
    noise: bool,
) -> torch.Tensor:
    """Mask bool [n] over the concatenated update: q_i + nu_i >= T + rho."""
    passes = torch.empty(sum(flat.numel() for flat in flats), dtype=torch.bool)
    # Scratch buffers sized to the largest tensor, reused, so the working set stays small.
    # float64 throughout: 53-bit uniforms reach the Laplace tails the proof relies on
    # (float32 uniforms stop at scale * ln(2^24), about 16.6 scales out).
    size = max((flat.numel() for flat in flats), default=0)
    query = torch.empty(size, dtype=torch.float64)
    uniform = torch.empty(size, dtype=torch.float64)
    scratch = torch.empty(size, dtype=torch.float64)
    start = 0
    for flat in flats:
        m = flat.numel()
        q = query[:m].copy_(flat).abs_().clamp_(max=clip)
        if noise:
            u = uniform[:m].uniform_(generator=generator)
            q.add_(_laplace_(u, query_scale, scratch[:m]))
        torch.ge(q, noisy_threshold, out=passes[start : start + m])
        start += m
    return passes


def laplace_noise(count: int, scale: float, generator: torch.Generator) -> torch.Tensor:
    """Lap(0, scale) float64 [count] from 53-bit uniforms of the injected generator."""
    return _laplace(count, scale, generator, torch.float64)


def _laplace(
    count: int, scale: float, generator: torch.Generator, dtype: torch.dtype
) -> torch.Tensor:
    """Lap(0, scale) [count] of ``dtype``, from the injected generator."""
    uniform = torch.rand(count, generator=generator, dtype=dtype)
    return _laplace_(uniform, scale, torch.empty_like(uniform))


def _laplace_(uniform: torch.Tensor, scale: float, scratch: torch.Tensor) -> torch.Tensor:
    """Uniforms in [0, 1) [m] -> Lap(0, scale) [m] by the inverse CDF, in ``uniform``.

    With v = u - 1/2, Lap = -scale * sign(v) * ln(1 - 2|v|); u is first lifted off 0 so the
    noise is always finite (its tails stop at about scale * ln(2^mantissa)).
    """
    tiny = torch.finfo(uniform.dtype).eps / 2
    v = uniform.clamp_(min=tiny).sub_(0.5)
    magnitude = torch.abs(v, out=scratch).mul_(-2.0).log1p_().mul_(-scale)
    return torch.copysign(magnitude, v, out=v)


def _spend(
    *, epsilon: float, c: int, n: int, clip: float, tau: float, budget: SvtBudget | None
) -> PrivacySpend:
    return PrivacySpend(
        mechanism=Mechanism.SVT,
        epsilon=epsilon,
        delta=0.0,
        accounting=ACCOUNTING,
        parameters={
            "c": c,
            "n": n,
            "gamma": clip,
            "threshold": tau,
            "eps1": None if budget is None else budget.eps1,
            "eps2": None if budget is None else budget.eps2,
            "eps3": None if budget is None else budget.eps3,
        },
    )
