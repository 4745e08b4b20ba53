"""The aggregation strategy interface: base model + a stream of weighted deltas -> new model."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import torch

from services.aggregator.aggregation.exact_sum import ExactSum
from shared.privacy.types import SparseTensor


@dataclass(frozen=True)
class WeightedUpdate:
    """One node's accepted update, loaded lazily so a strategy can stream over many.

    ``tensors()`` yields (name, delta) pairs; a delta is ``trained - base``, dense (same
    shape and dtype as the base model's tensor) or sparse (only the released positions).
    Tensors the node withheld are simply not yielded. ``tensor(name)`` reads just one,
    for strategies that combine one tensor of every update at a time.
    """

    node: str
    weight: float
    tensors: Callable[[], Iterator[tuple[str, torch.Tensor | SparseTensor]]]
    reader: Callable[[str], torch.Tensor | SparseTensor | None] | None = None
    """Reads one tensor by name (None if withheld) without holding the update open."""

    def tensor(self, name: str) -> torch.Tensor | SparseTensor | None:
        """One released delta by name, or None if the node withheld it."""
        if self.reader is not None:
            return self.reader(name)
        return next((delta for n, delta in self.tensors() if n == name), None)


ServerState = dict[str, torch.Tensor]
"""What a strategy carries from one round to the next (a server optimiser's moments),
stored by the aggregator as a safetensors blob beside the round's model."""


class Strategy(ABC):
    """How accepted updates become the next global model."""

    name: str
    sums_exactly: bool = False
    """Whether it adds weighted deltas in an ExactSum, so its updates must be in range."""

    @abstractmethod
    def aggregate(
        self, base: Mapping[str, torch.Tensor], updates: Iterable[WeightedUpdate]
    ) -> dict[str, torch.Tensor]:
        """The new global model; ``updates`` arrive in a deterministic (node name) order."""

    def aggregate_with_state(
        self,
        base: Mapping[str, torch.Tensor],
        updates: Iterable[WeightedUpdate],
        state: ServerState | None,
    ) -> tuple[dict[str, torch.Tensor], ServerState | None]:
        """The new model and the state for the next round, from the previous round's state
        (None before the first). Strategies without state ignore it and return None."""
        return self.aggregate(base, updates), None


class LinearStrategy(Strategy):
    """A strategy whose only use of the updates is their weighted mean delta.

    Its input is then one exact sum (exact_sum.py) that the aggregator folds each update
    into as it is accepted, so closing a round costs one ``step``, not K reads of K
    updates, and the model is the same bits whatever order the updates arrived in.
    """

    sums_exactly = True

    @abstractmethod
    def step(
        self,
        base: Mapping[str, torch.Tensor],
        mean: dict[str, torch.Tensor],
        state: ServerState | None,
    ) -> tuple[dict[str, torch.Tensor], ServerState | None]:
        """The new model and server state from the round's weighted mean delta (consumed)."""

    def aggregate(
        self, base: Mapping[str, torch.Tensor], updates: Iterable[WeightedUpdate]
    ) -> dict[str, torch.Tensor]:
        return self.aggregate_with_state(base, updates, None)[0]

    def aggregate_with_state(
        self,
        base: Mapping[str, torch.Tensor],
        updates: Iterable[WeightedUpdate],
        state: ServerState | None,
    ) -> tuple[dict[str, torch.Tensor], ServerState | None]:
        return self.step(base, weighted_mean_delta(base, updates), state)


def weighted_mean_delta(
    base: Mapping[str, torch.Tensor], updates: Iterable[WeightedUpdate]
) -> dict[str, torch.Tensor]:
    """sum_i(n_i * delta_i) / sum_i(n_i) per float tensor of ``base``, in float64, summed
    exactly (the same bits in any order of ``updates``)."""
    total = ExactSum.like(base)
    for number, update in enumerate(updates):
        if update.weight <= 0:
            raise ValueError(f"update from {update.node} has weight {update.weight}, must be > 0")
        total.add(f"{number}:{update.node}", update.weight, update.tensors())
    if not total.weights:
        raise ValueError("FedAvg needs at least one update")
    return total.mean()
