"""While a node trains it does not poll; a heartbeat thread tells the aggregator it lives."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

INTERVAL_S = 30.0
"""Well inside the aggregator's default offline threshold (120 s)."""


@contextmanager
def heartbeat(beat: Callable[[], object], interval_s: float = INTERVAL_S) -> Iterator[None]:
    """Call ``beat`` every ``interval_s`` seconds in a daemon thread until the block ends.

    ``beat`` must not raise (AggregatorClient.heartbeat is best-effort); the block's own
    exceptions pass through after the thread has stopped.
    """
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval_s):
            beat()

    thread = threading.Thread(target=loop, name="fedseg-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=interval_s)
