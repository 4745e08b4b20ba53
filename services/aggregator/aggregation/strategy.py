"""The aggregation strategy interface: base model + a stream of weighted deltas -> new model."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class WeightedUpdate:
    """One node's accepted update, loaded lazily so a strategy can stream over many.

    ``tensors()`` yields (name, delta) pairs; a delta is ``trained - base`` of the same shape
    and dtype as the base model's tensor.
    """

    node: str
    weight: float
    tensors: Callable[[], Iterator[tuple[str, torch.Tensor]]]


class Strategy(ABC):
    """How accepted updates become the next global model."""

    name: str

    @abstractmethod
    def aggregate(
        self, base: Mapping[str, torch.Tensor], updates: Iterable[WeightedUpdate]
    ) -> dict[str, torch.Tensor]:
        """The new global model; ``updates`` arrive in a deterministic (node name) order."""
