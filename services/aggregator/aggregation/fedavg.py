"""FedAvg (McMahan et al. 2017): the sample-weighted mean of the nodes' deltas."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from services.aggregator.aggregation.strategy import LinearStrategy, ServerState


class FedAvg(LinearStrategy):
    """new = base + sum_i(n_i * delta_i) / sum_i(n_i), with n_i the node's sample count.

    Memory is O(model): one exact (integer) accumulator plus the delta being read, however
    many nodes report, and the same bits in any arrival order (exact_sum.py), so the
    aggregator folds each update in as it is accepted. Non-float tensors (counters) keep
    the base model's value.

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

    def step(
        self, base: Mapping[str, torch.Tensor], mean: dict[str, torch.Tensor],
        state: ServerState | None,
    ) -> tuple[dict[str, torch.Tensor], ServerState | None]:  # fmt: skip
        return apply_delta(base, mean), None


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
