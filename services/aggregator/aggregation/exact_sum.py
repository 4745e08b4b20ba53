"""An exact weighted sum of deltas: the same bits whatever order the updates are added in.

Floating-point addition is not associative, so a float64 running sum of K updates
depends on the order they arrived in. To fold each update into the round's sum as it is
accepted (and still publish the same model after any arrival order, or after a crash
that lost a half-folded sum and re-read the updates from disk), each contribution is
turned into integers once and only integers are summed:

    x = w * float64(delta)                       one rounding, per update: order-free
    x * 2^16 = hi + f,  hi = floor(x * 2^16),  f in [0, 1)
    lo = round(f * 2^40)                         in [0, 2^40]

so x = hi * 2^-16 + lo * 2^-56 to within 2^-56 (f is exact where x >= 0 and rounded once
where x is in (-2^-16, 0); every step is deterministic). The error is absolute, not
relative: a weighted delta of 1e-12 keeps about 5 significant digits and one below 2^-57
(7e-18) becomes 0, far below what a float32 model can hold next to its weights.

``hi`` and ``lo`` go into two int64 accumulators; integer sums are exact, commutative
and associative, and a contribution can be taken out again exactly (a node removed from
the run). The sum is read back as (HI + carry) * 2^-16 + LO' * 2^-56 in float64 and
divided by the weights' exact sum.

Range: |w * delta| must be below ``MAX_CONTRIBUTION`` (2^34) for every value, and at most
``MAX_TERMS`` (4096) contributions may be summed, so |HI| < 2^62 and LO < 2^52 never
overflow. ``refusal`` says so for an update before it is accepted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch

from shared.privacy.types import SparseTensor

HI_FRACTION_BITS = 16
LO_BITS = 40
MAX_CONTRIBUTION = 2.0**34
MAX_TERMS = 4096
_HI_SCALE = 2.0**HI_FRACTION_BITS
_LO_SCALE = 2.0**LO_BITS
_LO_MASK = (1 << LO_BITS) - 1


def refusal(largest_abs_delta: float, weight: float) -> str | None:
    """Why an update with this weight and largest |delta| cannot be summed exactly, or None."""
    if largest_abs_delta * weight < MAX_CONTRIBUTION:
        return None
    return (
        f"weight {weight:g} times its largest |delta| {largest_abs_delta:.3g} is "
        f"{largest_abs_delta * weight:.3g}, beyond what the aggregator sums exactly "
        f"(below 2^34 = {MAX_CONTRIBUTION:.3g}); a delta that large is not training"
    )


_HI_LIMIT = MAX_CONTRIBUTION * _HI_SCALE  # 2^50: |hi| of one term


class SumRangeError(ValueError):
    """A contribution beyond what the sum holds exactly (refused at upload, so only an
    update stored by an older version, or a bug, gets here)."""


def _check_range(hi: torch.Tensor, key: str) -> None:
    if hi.numel() == 0:
        return
    low, high = torch.aminmax(hi)
    if not (float(low) >= -_HI_LIMIT and float(high) < _HI_LIMIT):  # NaN fails too
        raise SumRangeError(
            f"update {key[:80]} has a weight x delta beyond the exact sum's range (2^34); "
            "the round cannot be aggregated exactly"
        )


CHUNK = 1 << 16
"""Values converted at a time: scratch buffers that stay in cache, allocated once."""


def _limbs(values: torch.Tensor, weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(hi, lo) of ``weight * values`` (a few values at once: a sparse delta's)."""
    # weight * 2^16 is exact, and scaling by a power of two commutes with rounding, so
    # this is the one rounding of weight * value, scaled exactly.
    scaled = values.to(torch.float64).mul_(weight * _HI_SCALE)
    hi = torch.floor(scaled)
    lo = torch.round(scaled.sub_(hi).mul_(_LO_SCALE))
    return hi.to(torch.int64), lo.to(torch.int64)


class ExactSum:
    """sum_i(w_i * delta_i) over float tensors of a model, exact in any order.

    Memory: two int64 tensors per float tensor of the model (16 bytes per parameter),
    whatever the number of contributions.
    """

    def __init__(self, shapes: Mapping[str, torch.Size]) -> None:
        self.hi = {name: torch.zeros(shape, dtype=torch.int64) for name, shape in shapes.items()}
        self.lo = {name: torch.zeros(shape, dtype=torch.int64) for name, shape in shapes.items()}
        self.weights: dict[str, float] = {}
        """Weight of each contribution, by its key (the update's digest)."""
        self._scaled = torch.empty(CHUNK, dtype=torch.float64)
        self._floor = torch.empty(CHUNK, dtype=torch.float64)
        self._limb = torch.empty(CHUNK, dtype=torch.int64)

    @classmethod
    def like(cls, base: Mapping[str, torch.Tensor]) -> ExactSum:
        return cls({name: t.shape for name, t in base.items() if t.is_floating_point()})

    def add(
        self,
        key: str,
        weight: float,
        deltas: Iterable[tuple[str, torch.Tensor | SparseTensor]],
        sign: int = 1,
    ) -> None:
        """Add (``sign`` 1) or take out (-1) one update's weighted deltas, under ``key``.

        A tensor the sum does not hold (a counter) is skipped; a sparse delta adds only at
        its released positions.
        """
        if sign == 1 and key in self.weights:
            raise ValueError(f"contribution {key[:12]} is already in the sum")
        if sign == -1 and key not in self.weights:
            raise ValueError(f"contribution {key[:12]} is not in the sum")
        if sign == 1 and len(self.weights) >= MAX_TERMS:
            raise ValueError(f"an exact sum holds at most {MAX_TERMS} contributions")
        if not weight > 0:
            raise ValueError(f"contribution {key[:12]} has weight {weight}, must be > 0")
        for name, delta in deltas:
            if name not in self.hi:
                continue
            if isinstance(delta, SparseTensor):
                hi, lo = _limbs(delta.values, weight)
                _check_range(hi, key)
                self.hi[name].view(-1).index_add_(0, delta.indices, hi, alpha=sign)
                self.lo[name].view(-1).index_add_(0, delta.indices, lo, alpha=sign)
            else:
                self._add_dense(key, name, delta.reshape(-1), weight, sign)
        if sign == 1:
            self.weights[key] = weight
        else:
            del self.weights[key]

    def _add_dense(
        self, key: str, name: str, values: torch.Tensor, weight: float, sign: int
    ) -> None:
        """What ``_limbs`` computes, a chunk at a time in the scratch buffers."""
        hi, lo = self.hi[name].view(-1), self.lo[name].view(-1)
        if values.numel() != hi.numel():
            raise ValueError(f"delta {name} has {values.numel()} values, the sum {hi.numel()}")
        scale = weight * _HI_SCALE
        for start in range(0, hi.numel(), CHUNK):
            end = min(hi.numel(), start + CHUNK)
            size = end - start
            scaled, floor, limb = self._scaled[:size], self._floor[:size], self._limb[:size]
            scaled.copy_(values[start:end]).mul_(scale)
            torch.floor(scaled, out=floor)
            _check_range(floor, key)
            scaled.sub_(floor).mul_(_LO_SCALE).round_()
            hi[start:end].add_(limb.copy_(floor), alpha=sign)
            lo[start:end].add_(limb.copy_(scaled), alpha=sign)

    def mean(self) -> dict[str, torch.Tensor]:
        """sum_i(w_i delta_i) / sum_i(w_i) per tensor, in float64; the sum is consumed."""
        total = math.fsum(self.weights.values())
        if total == 0.0:
            raise ValueError("the sum holds no contribution")
        result: dict[str, torch.Tensor] = {}
        for name in list(self.hi):
            hi, lo = self.hi.pop(name), self.lo.pop(name)
            hi.add_(lo >> LO_BITS)
            lo.bitwise_and_(_LO_MASK)
            value = hi.to(torch.float64).div_(_HI_SCALE)
            value.add_(lo.to(torch.float64).div_(_HI_SCALE * _LO_SCALE))
            result[name] = value.div_(total)
        return result
