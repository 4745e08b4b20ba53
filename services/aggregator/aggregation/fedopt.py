"""FedAdam (Reddi et al. 2021, "Adaptive Federated Optimization", Algorithm 2).

The averaged delta of the round, Delta_t = sum_i(n_i delta_i) / sum_i(n_i) as in FedAvg,
is treated as a pseudo-gradient and fed to Adam on the server:

    m_t = beta1 m_{t-1} + (1 - beta1) Delta_t
    v_t = beta2 v_{t-1} + (1 - beta2) Delta_t^2
    x_{t+1} = x_t + eta m_t / (sqrt(v_t) + tau)

with m = v = 0 before the first round and no bias correction, as in the paper. The
moments are the strategy's ``ServerState``: the aggregator stores them (float32, as
``m/<tensor>`` and ``v/<tensor>``) beside each round's model and hands the previous
round's back, so a crash and restart recomputes the same bits from the same inputs.
FedAdam adapts the step per component: components that all nodes move the same way keep a
step near ``eta`` however small their deltas, which speeds up the rounds where FedAvg's
averaged step is small.

Memory: the float64 mean delta, the two moments and the model, O(model) whatever K is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from services.aggregator.aggregation.fedavg import apply_delta
from services.aggregator.aggregation.strategy import LinearStrategy, ServerState


class FedAdam(LinearStrategy):
    """Adam on the server over FedAvg's averaged delta."""

    name = "fedadam"

    def __init__(self, server_lr: float, beta1: float, beta2: float, tau: float) -> None:
        if not 0.0 < server_lr < math.inf:
            raise ValueError(f"server_lr must be a finite number > 0, got {server_lr}")
        if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
            raise ValueError(f"beta1 and beta2 must be in [0, 1), got {beta1} and {beta2}")
        if not 0.0 < tau < math.inf:
            raise ValueError(f"tau must be a finite number > 0, got {tau}")
        self.server_lr, self.beta1, self.beta2, self.tau = server_lr, beta1, beta2, tau

    def step(
        self,
        base: Mapping[str, torch.Tensor],
        mean: dict[str, torch.Tensor],
        state: ServerState | None,
    ) -> tuple[dict[str, torch.Tensor], ServerState]:
        previous = state or {}
        steps: dict[str, torch.Tensor] = {}
        moments: ServerState = {}
        for name in sorted(mean):
            delta = mean.pop(name)
            m = _moment(previous, f"m/{name}", delta)
            v = _moment(previous, f"v/{name}", delta)
            m.mul_(self.beta1).add_(delta, alpha=1.0 - self.beta1)
            v.mul_(self.beta2).addcmul_(delta, delta, value=1.0 - self.beta2)
            steps[name] = m * self.server_lr / (v.sqrt() + self.tau)
            moments[f"m/{name}"] = m.to(torch.float32).contiguous()
            moments[f"v/{name}"] = v.to(torch.float32).contiguous()
        return apply_delta(base, steps), moments


def _moment(state: ServerState, key: str, like: torch.Tensor) -> torch.Tensor:
    """The stored moment as float64 (zeros before the first round), shaped like ``like``."""
    stored = state.get(key)
    if stored is None:
        return torch.zeros_like(like, dtype=torch.float64)
    if stored.shape != like.shape:
        raise ValueError(f"server state {key} has shape {tuple(stored.shape)}, "
                         f"the model's tensor {tuple(like.shape)}")  # fmt: skip
    return stored.to(torch.float64)
