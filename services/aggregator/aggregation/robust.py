"""Aggregation that one broken or hostile node cannot steer: norm bounds, trimmed means, medians.

FedAvg lets a node move the global model as far as its update and claimed weight take it.
These strategies bound that:

- ``NormBounded`` (Sun et al. 2019, "Can you really backdoor federated learning?"): each
  update's L2 norm over every released component is clipped to ``max_norm`` before the
  weighted mean, so no node moves the model by more than ``max_norm * its weight share``.
- ``TrimmedMean`` (Yin et al. 2018, "Byzantine-robust distributed learning"): per
  component, the ``floor(beta K)`` largest and smallest of the K nodes' values are dropped
  and the rest averaged (unweighted: a claimed weight buys nothing).
- ``Median`` (Yin et al. 2018): the per-component median of the K values (the mean of the
  two middle ones for even K), unweighted.

A component a node did not release counts as a zero delta from it, as in FedAvg. The
coordinate-wise strategies need every node's value of a tensor at once: they read one
tensor of every update at a time (each file opened for that tensor and closed again), so
memory peaks at a small multiple of K times the largest tensor (the float32 values, their
sort with its int64 indices, the float64 mean), not K times the model:
``python -m benchmarks.aggregator_memory`` measures it. All three are deterministic for
the same updates: sorting and float64 sums do not depend on arrival order (updates come
ordered by node).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping

import torch

from services.aggregator.aggregation.fedavg import FedAvg
from services.aggregator.aggregation.strategy import Strategy, WeightedUpdate
from shared.privacy.types import SparseTensor

Delta = torch.Tensor | SparseTensor


def _dense(delta: Delta, like: torch.Tensor) -> torch.Tensor:
    """A delta as a dense float32 tensor shaped like the base model's ``like``."""
    if isinstance(delta, SparseTensor):
        out = torch.zeros(like.numel(), dtype=torch.float32)
        out.index_copy_(0, delta.indices, delta.values.to(torch.float32))
        return out.reshape(like.shape)
    return delta.to(torch.float32).reshape(like.shape)


def _squared_norm(delta: Delta) -> float:
    values = delta.values if isinstance(delta, SparseTensor) else delta
    return float(torch.linalg.vector_norm(values.to(torch.float64)) ** 2)


class NormBounded(Strategy):
    """FedAvg of the updates after clipping each one's global L2 norm to ``max_norm``."""

    name = "norm-bounded"
    sums_exactly = True  # the clipped deltas go through FedAvg's exact sum

    def __init__(self, max_norm: float) -> None:
        if not 0.0 < max_norm < math.inf:
            raise ValueError(f"max_norm must be a finite number > 0, got {max_norm}")
        self.max_norm = max_norm

    def aggregate(
        self, base: Mapping[str, torch.Tensor], updates: Iterable[WeightedUpdate]
    ) -> dict[str, torch.Tensor]:
        floats = {n for n, t in base.items() if t.is_floating_point()}

        def clipped(update: WeightedUpdate) -> WeightedUpdate:
            # First pass: the norm over every released float component; second: scaled.
            norm = math.sqrt(sum(_squared_norm(d) for n, d in update.tensors() if n in floats))
            scale = min(1.0, self.max_norm / norm) if norm > 0.0 else 1.0

            def tensors() -> Iterator[tuple[str, Delta]]:
                for name, delta in update.tensors():
                    if isinstance(delta, SparseTensor):
                        yield name, SparseTensor(delta.indices, delta.values * scale, delta.shape)
                    else:
                        yield name, delta * scale

            return WeightedUpdate(update.node, update.weight, tensors)

        return FedAvg().aggregate(base, (clipped(u) for u in updates))


class _Coordinatewise(Strategy):
    """Reads the K updates tensor by tensor and combines each component's K values."""

    def combine(self, stacked: torch.Tensor) -> torch.Tensor:
        """[K, n] float32 values -> [n] float64 combined delta."""
        raise NotImplementedError

    def aggregate(
        self, base: Mapping[str, torch.Tensor], updates: Iterable[WeightedUpdate]
    ) -> dict[str, torch.Tensor]:
        chosen = list(updates)
        if not chosen:
            raise ValueError(f"{self.name} needs at least one update")
        result: dict[str, torch.Tensor] = {}
        for name, tensor in base.items():
            if not tensor.is_floating_point():
                result[name] = tensor.clone()
                continue
            values = torch.zeros((len(chosen), tensor.numel()), dtype=torch.float32)
            for row, update in enumerate(chosen):
                delta = update.tensor(name)  # one tensor read, the file closed again
                if delta is not None:  # else: not released by this node, a zero delta
                    values[row] = _dense(delta, tensor).reshape(-1)
            combined = self.combine(values).reshape(tensor.shape)
            del values
            result[name] = (tensor.to(torch.float64) + combined).to(tensor.dtype).contiguous()
        return result


class TrimmedMean(_Coordinatewise):
    """Per component: drop the floor(beta K) largest and smallest values, average the rest."""

    name = "trimmed-mean"

    def __init__(self, beta: float) -> None:
        if not 0.0 <= beta < 0.5:
            raise ValueError(f"trim fraction beta must be in [0, 0.5), got {beta}")
        self.beta = beta

    def combine(self, stacked: torch.Tensor) -> torch.Tensor:
        k = stacked.shape[0]
        cut = math.floor(self.beta * k)
        ordered = torch.sort(stacked, dim=0).values
        return ordered[cut : k - cut].to(torch.float64).mean(dim=0)


class Median(_Coordinatewise):
    """Per component: the median of the K values (mean of the two middle ones for even K)."""

    name = "median"

    def combine(self, stacked: torch.Tensor) -> torch.Tensor:
        k = stacked.shape[0]
        ordered = torch.sort(stacked, dim=0).values.to(torch.float64)
        if k % 2:
            return ordered[k // 2]
        return (ordered[k // 2 - 1] + ordered[k // 2]) / 2.0
