"""Partial model sharing: release only the largest-magnitude fraction of an update."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

import torch

from shared.privacy.types import SparseTensor
from shared.schemas import SelectionScope


def share_count(fraction: float, n: int) -> int:
    """ceil(fraction * n), computed on the decimal the caller wrote (0.3 of 10 is 3, not 4).

    Float arithmetic gets this wrong (0.3 * 10 == 3.0000000000000004), so the fraction is
    read back from its shortest decimal representation and multiplied exactly.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return min(n, math.ceil(Fraction(repr(float(fraction))) * n))


def float_flat(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """A float32 CPU view [numel] of a float tensor (a copy if dtype, device or layout differ)."""
    if not tensor.is_floating_point():
        raise ValueError(f"tensor {name!r} is {tensor.dtype}; only float tensors can be released")
    return tensor.detach().to(device="cpu", dtype=torch.float32).reshape(-1)


@dataclass(frozen=True)
class FlatLayout:
    """Where each tensor of an update sits in the update's flattened concatenation [n].

    Tensor ``names[i]`` occupies the global positions ``offsets[i] : offsets[i + 1]``.
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]

    @classmethod
    def of(cls, delta: Mapping[str, torch.Tensor]) -> FlatLayout:
        offsets = [0]
        for tensor in delta.values():
            offsets.append(offsets[-1] + tensor.numel())
        return cls(
            names=tuple(delta),
            shapes=tuple(tuple(t.shape) for t in delta.values()),
            offsets=tuple(offsets),
        )

    @property
    def n(self) -> int:
        """Total number of components."""
        return self.offsets[-1]

    def local(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        """Global ``indices`` int64 [k], strictly increasing -> name -> local positions [k_t].

        Every tensor gets an entry, possibly empty, so the receiver knows every shape.
        """
        bounds = torch.searchsorted(indices, torch.tensor(self.offsets, dtype=torch.int64))
        cuts = bounds.tolist()
        return {
            name: indices[cuts[i] : cuts[i + 1]] - self.offsets[i]
            for i, name in enumerate(self.names)
        }


def top_k_positions(magnitudes: torch.Tensor, k: int) -> torch.Tensor:
    """Sorted positions int64 [k] of the k largest of ``magnitudes`` [n] (finite).

    One threshold, the k-th largest value v, found with ``kthvalue`` (linear time); every
    value above v is kept and ties at v go to the lowest positions, so the result is
    deterministic.
    """
    n = magnitudes.numel()
    if k >= n:
        return torch.arange(n, dtype=torch.int64)
    if k <= 0:
        return torch.empty(0, dtype=torch.int64)
    kth = magnitudes.kthvalue(n - k + 1).values
    keep = magnitudes > kth
    missing = k - int(torch.count_nonzero(keep))
    if missing > 0:
        ties = (magnitudes == kth).nonzero().squeeze(1)
        keep[ties[:missing]] = True
    return keep.nonzero().squeeze(1)


def partial_share(
    delta: Mapping[str, torch.Tensor],
    fraction: float,
    scope: SelectionScope,
    clip: float | None,
) -> dict[str, SparseTensor]:
    """Keep the largest-|value| components of a weight delta; nothing else is sent.

    Partial model sharing (Shokri and Shmatikov, CCS 2015; Li et al., MLMI 2019). With
    ``scope=MODEL`` the ceil(fraction * n) largest over all n components are kept (a single
    global threshold); with ``scope=TENSOR`` each tensor of n_t components keeps its own
    ceil(fraction * n_t). Selection uses the raw magnitudes; the kept values are then
    clipped to [-clip, clip] when ``clip`` is given. ``fraction=1.0`` keeps everything.

    This is *not* differential privacy: which components are released, and their values,
    are exact functions of the data.

    delta: name -> float tensor of any shape (0-dim counts as one component), finite.
    Returns: name -> SparseTensor (float32 values), one per input tensor.
    """
    share_count(fraction, 0)  # validates the fraction even for an empty update
    if clip is not None and not clip > 0.0:
        raise ValueError(f"clip must be > 0 or None, got {clip}")
    flats = {name: float_flat(t, name) for name, t in delta.items()}
    if scope is SelectionScope.TENSOR:
        out: dict[str, SparseTensor] = {}
        for name, flat in flats.items():
            k_t = share_count(fraction, flat.numel())
            out[name] = _gather(flat, top_k_positions(flat.abs(), k_t), clip, delta[name])
        return out
    if not flats:
        return {}
    layout = FlatLayout.of(delta)
    k = share_count(fraction, layout.n)
    # One n-sized temporary: the magnitudes; values are gathered from the tensors themselves.
    magnitudes = torch.cat([flat.abs() for flat in flats.values()])
    positions = layout.local(top_k_positions(magnitudes, k))
    return {name: _gather(flat, positions[name], clip, delta[name]) for name, flat in flats.items()}


def _gather(
    flat: torch.Tensor, positions: torch.Tensor, clip: float | None, like: torch.Tensor
) -> SparseTensor:
    values = flat[positions]
    return SparseTensor(
        indices=positions,
        values=values if clip is None else values.clamp_(-clip, clip),
        shape=tuple(like.shape),
    )
