"""The loop-lag probe records how long something held the event loop."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry

from services.aggregator.core.looplag import LoopLag


def _value(registry: CollectorRegistry, name: str) -> float:
    value = registry.get_sample_value(name)
    assert value is not None, name
    return value


def test_a_handler_that_blocks_the_loop_shows_as_lag() -> None:
    registry = CollectorRegistry()
    probe = LoopLag(registry, interval=0.01)

    async def scenario() -> None:
        task = asyncio.create_task(probe.run())
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # what a handler hashing on the loop would do
        await asyncio.sleep(0.05)
        task.cancel()

    asyncio.run(scenario())
    assert 0.25 <= probe.worst < 1.0
    assert _value(registry, "fedseg_event_loop_lag_max_seconds") == probe.worst
    assert _value(registry, "fedseg_event_loop_lag_seconds_count") >= 3
    # One observation above 0.25 s, the rest small.
    above = _value(registry, "fedseg_event_loop_lag_seconds_count") - (
        registry.get_sample_value("fedseg_event_loop_lag_seconds_bucket", {"le": "0.25"}) or 0.0
    )
    assert above == 1


def test_a_loop_that_only_awaits_shows_little_lag() -> None:
    registry = CollectorRegistry()
    probe = LoopLag(registry, interval=0.01)

    async def scenario() -> None:
        task = asyncio.create_task(probe.run())
        await asyncio.sleep(0.2)
        task.cancel()

    asyncio.run(scenario())
    assert probe.worst < 0.1
