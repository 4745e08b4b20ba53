"""FedAvg (McMahan et al. 2017): the sample-weighted mean of the nodes' deltas."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

from services.aggregator.aggregation.strategy import Strategy, WeightedUpdate


def accumulate_(
    acc: dict[str, torch.Tensor], delta_name: str, delta: torch.Tensor, w: float
) -> None:
    """acc[name] += w * delta, in place (float64 accumulator, so order barely matters)."""
    acc[delta_name].add_(delta.to(torch.float64), alpha=w)


class FedAvg(Strategy):
    """new = base + sum_i(n_i * delta_i) / sum_i(n_i), with n_i the node's sample count.

    Memory is O(model): one float64 accumulator plus the delta being read, however many
    nodes report. Non-float tensors (counters) keep the base model's value.
    """

    name = "fedavg"

    def aggregate(
        self, base: Mapping[str, torch.Tensor], updates: Iterable[WeightedUpdate]
    ) -> dict[str, torch.Tensor]:
        acc = {
            name: torch.zeros(t.shape, dtype=torch.float64)
            for name, t in base.items()
            if t.is_floating_point()
        }
        total = 0.0
        for update in updates:
            if update.weight <= 0:
                raise ValueError(
                    f"update from {update.node} has weight {update.weight}, must be > 0"
                )
            for name, delta in update.tensors():
                if name in acc:
                    accumulate_(acc, name, delta, update.weight)
            total += update.weight
        if total == 0.0:
            raise ValueError("FedAvg needs at least one update")
        result: dict[str, torch.Tensor] = {}
        for name, tensor in base.items():
            if name in acc:
                mean = acc.pop(name).div_(total)
                result[name] = (tensor.to(torch.float64) + mean).to(tensor.dtype).contiguous()
            else:
                result[name] = tensor.clone()
        return result
