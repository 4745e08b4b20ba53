"""The node's update filter chain: what transforms a weight delta before it leaves.

Privacy mechanisms (partial sharing, SVT, the Gaussian mechanism) plug in here; the chain
is empty by default, so the delta is sent as computed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import torch


class UpdateFilter(Protocol):
    """Maps a delta ({name: tensor}) to the delta that is actually released."""

    name: str

    def __call__(self, delta: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...


class FilterChain:
    """Applies filters in order; with no filters the delta passes unchanged."""

    def __init__(self, filters: Sequence[UpdateFilter] = ()) -> None:
        self.filters = tuple(filters)

    def __call__(self, delta: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        result = dict(delta)
        for step in self.filters:
            result = step(result)
        return result

    def describe(self) -> str:
        return " -> ".join(f.name for f in self.filters) or "none"
