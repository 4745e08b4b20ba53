"""Wake-ups between threads and the event loop: long-polls and the round ticker."""

from __future__ import annotations

import asyncio
import contextlib


class Signal:
    """An edge-triggered wake-up that worker threads may fire into the event loop."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        """Return when fired or after ``timeout`` seconds, whichever is first."""
        loop = asyncio.get_running_loop()
        if self._event is None or self._loop is not loop:
            self.bind(loop)
        assert self._event is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)

    def fire(self) -> None:
        """Safe from any thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = asyncio.Event()
