"""The aggregation strategy interface: base model + a stream of weighted deltas -> new model."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import torch

from shared.privacy.types import SparseTensor


@dataclass(frozen=True)
class WeightedUpdate:
    """One node's accepted update, loaded lazily so a strategy can stream over many.

    ``tensors()`` yields (name, delta) pairs; a delta is ``trained - base``, dense (same
    shape and dtype as the base model's tensor) or sparse (only the released positions).
    Tensors the node withheld are simply not yielded.
    """

    node: str
    weight: float
    tensors: Callable[[], Iterator[tuple[str, torch.Tensor | SparseTensor]]]


class Strategy(ABC):
    """How accepted updates become the next global model."""

    name: str

    @abstractmethod
    def aggregate(
        self, base: Mapping[str, torch.Tensor], updates: Iterable[WeightedUpdate]
    ) -> dict[str, torch.Tensor]:
        """The new global model; ``updates`` arrive in a deterministic (node name) order."""
