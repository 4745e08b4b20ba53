"""How long the event loop was held: the lateness of a sleeper's wake-up, as metrics.

Every request of every node and operator is served by one event loop. A handler that
hashes, checks tensors, runs SQL or aggregates on it (instead of in a worker thread)
stalls all of them for as long as it runs. ``LoopLag`` sleeps ``interval`` seconds in a
loop and records how much later than asked it woke: the longest time anything held the
loop since its last wake-up (plus scheduling noise). Operators see it in ``/metrics``; a
test with real processes bounds it.
"""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Gauge, Histogram

LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LoopLag:
    """A probe of the running loop's lag; ``run`` until cancelled."""

    def __init__(self, registry: CollectorRegistry, interval: float = 0.05) -> None:
        self.interval = interval
        self.worst = 0.0
        self.histogram = Histogram(
            "fedseg_event_loop_lag_seconds",
            f"How much later than asked a {interval} s sleep on the event loop woke: how "
            "long something held the loop that serves every request.",
            buckets=LAG_BUCKETS, registry=registry,
        )  # fmt: skip
        self.maximum = Gauge(
            "fedseg_event_loop_lag_max_seconds",
            "The largest event-loop lag since this process started.",
            registry=registry,
        )

    def record(self, lag: float) -> None:
        lag = max(0.0, lag)
        self.histogram.observe(lag)
        if lag > self.worst:
            self.worst = lag
            self.maximum.set(lag)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self.record(loop.time() - asked)
