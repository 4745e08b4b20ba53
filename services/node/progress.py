"""A plain-text progress bar for local training on stderr, redrawn in place on a terminal."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

BAR_WIDTH = 24
"""Characters in the bar itself."""
LOG_EVERY_FRACTION = 0.1
"""Off a terminal (log files, containers) a line is written per 10 % of the steps."""


class ProgressBar:
    """Progress of ``train_local``: pass an instance as its ``progress(step, total, loss)``.

    On a terminal the line ``round 3 [#########...............] 9/24 loss 0.4312 2.1 steps/s``
    is redrawn in place at most every ``min_interval_s``; elsewhere (a log file, a container's
    stdout) one such line is written per tenth of the steps, so logs stay short. The last
    step always prints and ends the line.
    """

    def __init__(
        self,
        label: str,
        stream: TextIO | None = None,
        *,
        min_interval_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min_interval_s < 0:
            raise ValueError(f"min_interval_s must be >= 0, got {min_interval_s}")
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._started = clock()
        self._last_draw = float("-inf")
        self._last_logged = 0
        self._interactive = bool(getattr(self.stream, "isatty", lambda: False)())

    def line(self, step: int, total: int, loss: float) -> str:
        """The text of the bar after `step` of `total` steps, without any line ending."""
        filled = BAR_WIDTH * step // total if total > 0 else BAR_WIDTH
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        elapsed = max(self._clock() - self._started, 1e-9)
        return f"{self.label} [{bar}] {step}/{total} loss {loss:.4f} {step / elapsed:.1f} steps/s"

    def __call__(self, step: int, total: int, loss: float) -> None:
        if step < 1 or total < 1 or step > total:
            raise ValueError(f"progress needs 1 <= step <= total, got step {step} of {total}")
        last = step == total
        if self._interactive:
            now = self._clock()
            if last or now - self._last_draw >= self.min_interval_s:
                self._last_draw = now
                self.stream.write("\r" + self.line(step, total, loss) + ("\n" if last else ""))
                self.stream.flush()
            return
        every = max(1, round(total * LOG_EVERY_FRACTION))
        if last or step - self._last_logged >= every:
            self._last_logged = step
            self.stream.write(self.line(step, total, loss) + "\n")
            self.stream.flush()
