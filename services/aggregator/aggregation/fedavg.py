"""FedAvg (McMahan et al. 2017): the sample-weighted mean of the nodes' deltas."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

from services.aggregator.aggregation.strategy import Strategy, WeightedUpdate
from shared.privacy.types import SparseTensor


def accumulate_(
    acc: dict[str, torch.Tensor], name: str, delta: torch.Tensor | SparseTensor, w: float
) -> None:
    """acc[name] += w * delta, in place (float64 accumulator, so order barely matters).

    A sparse delta adds only at its released positions; every other position adds zero.
    """
    if isinstance(delta, SparseTensor):
        acc[name].view(-1).index_add_(0, delta.indices, delta.values.to(torch.float64), alpha=w)
    else:
        acc[name].add_(delta.to(torch.float64), alpha=w)


class FedAvg(Strategy):
    """new = base + sum_i(n_i * delta_i) / sum_i(n_i), with n_i the node's sample count.

    Memory is O(model): one float64 accumulator plus the delta being read, however many
    nodes report. Non-float tensors (counters) keep the base model's value.

    A component a node did not release (sparse sharing, SVT, an excluded tensor) counts as
    a zero delta from that node, and the denominator stays sum_i(n_i) for every component,
    as in Li et al. 2019's implementation. The alternative, dividing each component by the
    weight of only the nodes that released it, would hand a single node's noisy value the
    whole federation's weight wherever it alone was selected, undoing the averaging that
    dilutes each node's privacy noise, and would make the result depend on which nodes
    happened to select a component. Zero-counting shrinks the step towards zero instead,
    which the learning rate absorbs.
    """

    name = "fedavg"

    def aggregate(
        self, base: Mapping[str, torch.Tensor], updates: Iterable[WeightedUpdate]
    ) -> dict[str, torch.Tensor]:
        mean = weighted_mean_delta(base, updates)
        return apply_delta(base, mean)


def weighted_mean_delta(
    base: Mapping[str, torch.Tensor], updates: Iterable[WeightedUpdate]
) -> dict[str, torch.Tensor]:
    """sum_i(n_i * delta_i) / sum_i(n_i) per float tensor of ``base``, in float64."""
    acc = {
        name: torch.zeros(t.shape, dtype=torch.float64)
        for name, t in base.items()
        if t.is_floating_point()
    }
    total = 0.0
    for update in updates:
        if update.weight <= 0:
            raise ValueError(f"update from {update.node} has weight {update.weight}, must be > 0")
        for name, delta in update.tensors():
            if name in acc:
                accumulate_(acc, name, delta, update.weight)
        total += update.weight
    if total == 0.0:
        raise ValueError("FedAvg needs at least one update")
    for tensor in acc.values():
        tensor.div_(total)
    return acc


def apply_delta(
    base: Mapping[str, torch.Tensor], delta: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """base + delta for the tensors ``delta`` names (consumed), in the base's dtypes; every
    other tensor (counters) keeps the base model's value."""
    result: dict[str, torch.Tensor] = {}
    for name, tensor in base.items():
        if name in delta:
            step = delta.pop(name)
            result[name] = (tensor.to(torch.float64) + step).to(tensor.dtype).contiguous()
        else:
            result[name] = tensor.clone()
    return result
