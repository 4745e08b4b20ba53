"""What a privacy mechanism returns: the released tensors and the guarantee it claims."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from shared.schemas import PrivacySpend


@dataclass(frozen=True)
class SparseTensor:
    """The released entries of one tensor; every other entry is not sent at all.

    indices: int64 [k], positions in the flattened tensor, strictly increasing.
    values: float32 [k], the released values at those positions.
    shape: the dense tensor's shape.
    """

    indices: torch.Tensor
    values: torch.Tensor
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.indices.dtype != torch.int64 or self.indices.ndim != 1:
            raise ValueError(
                f"indices must be int64 [k], got {self.indices.dtype} {list(self.indices.shape)}"
            )
        if self.values.shape != self.indices.shape:
            raise ValueError(
                f"values {list(self.values.shape)} and indices "
                f"{list(self.indices.shape)} differ in length"
            )

    def to_dense(self) -> torch.Tensor:
        """Dense float32 tensor of ``shape`` with zeros where nothing was released."""
        flat = torch.zeros(int(torch.Size(self.shape).numel()), dtype=torch.float32)
        flat[self.indices] = self.values.to(torch.float32)
        return flat.reshape(self.shape)


@dataclass(frozen=True)
class Release:
    """A delta after a mechanism: dense tensors, sparse tensors, and what was withheld.

    ``dense`` and ``sparse`` have disjoint keys; ``excluded`` names tensors that never
    leave the node. ``spend`` is this round's guarantee as the mechanism states it.
    """

    dense: dict[str, torch.Tensor]
    sparse: dict[str, SparseTensor]
    excluded: tuple[str, ...]
    spend: PrivacySpend
    notes: tuple[str, ...] = field(default=())
