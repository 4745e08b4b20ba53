"""Which strategy a run aggregates with: one table from a run's setting to its strategy."""

from __future__ import annotations

from collections.abc import Callable

from services.aggregator.aggregation.fedavg import FedAvg
from services.aggregator.aggregation.fedopt import FedAdam
from services.aggregator.aggregation.robust import Median, NormBounded, TrimmedMean
from services.aggregator.aggregation.strategy import Strategy
from shared.schemas import Aggregation, AggregationName

STRATEGIES: dict[AggregationName, Callable[[Aggregation], Strategy]] = {
    AggregationName.FEDAVG: lambda _: FedAvg(),
    AggregationName.NORM_BOUNDED: lambda a: NormBounded(float(a.max_norm or 0.0)),
    AggregationName.TRIMMED_MEAN: lambda a: TrimmedMean(a.trim_fraction),
    AggregationName.MEDIAN: lambda _: Median(),
    AggregationName.FEDADAM: lambda a: FedAdam(a.server_lr, a.beta1, a.beta2, a.tau),
}


def strategy_for(aggregation: Aggregation) -> Strategy:
    return STRATEGIES[aggregation.name](aggregation)
