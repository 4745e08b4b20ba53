"""How long a connection may sit idle or stall before the aggregator closes it.

uvicorn closes a keep-alive connection only after a response; a connection that never
sends a request, trickles its headers a line at a time, or stops halfway through an upload
holds a socket (and, for an upload, a temporary file) for as long as the peer likes. A
handful of them from one broken node would tie the server up. ``Deadlines`` is mixed into
the HTTP protocol classes and tracks each connection through four phases:

- ``idle``: no request in progress (just connected, or the last response is sent). The
  peer has ``idle_s`` to start a request.
- ``headers``: a request has begun. Its headers must be complete ``header_s`` after its
  first byte, however slowly they trickle.
- ``body``: the headers are in and the body is coming. The peer may pause at most
  ``body_s`` between two pieces; a pause while the server itself has stopped reading (flow
  control, the application is busy) does not count.
- ``handling``: the whole request is in and the application is answering (a long poll may
  take its time). No deadline, except that a peer which stops reading the response for
  ``body_s`` is cut off.

When a deadline passes the connection is closed with one warning line. An upload cut off
this way sees a disconnect, so its temporary file is removed like any other failed upload.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

log = logging.getLogger("fedseg.aggregator")


@dataclass(frozen=True)
class ConnectionTimeouts:
    idle_s: float = 75.0
    header_s: float = 30.0
    body_s: float = 60.0


class Phase(StrEnum):
    IDLE = "idle"
    HEADERS = "headers"
    BODY = "body"
    HANDLING = "handling"


_WHY = {
    Phase.IDLE: "no request within {t:g} s",
    Phase.HEADERS: "request headers not complete {t:g} s after they began",
    Phase.BODY: "request body stalled for {t:g} s",
    Phase.HANDLING: "the client stopped reading the response for {t:g} s",
}


class Deadlines:
    """Mixin for uvicorn's HTTP protocol classes (before them in the bases).

    Reads ``self.config.timeouts`` (a ``ConnectionTimeouts``) and uvicorn's ``transport``,
    ``flow`` and ``cycle`` attributes, which both the h11 and httptools protocols keep.
    """

    config: Any
    transport: asyncio.Transport
    flow: Any
    cycle: Any
    client: tuple[str, int] | None

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._timeouts: ConnectionTimeouts = getattr(self.config, "timeouts", ConnectionTimeouts())
        self._timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._phase = Phase.IDLE
        self._arm(Phase.IDLE)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # type: ignore[misc]
        self._sync(got_data=True)

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._sync(got_data=False)

    def pause_writing(self) -> None:
        super().pause_writing()  # type: ignore[misc]
        if self._write_timer is None:
            loop = asyncio.get_running_loop()
            self._write_timer = loop.call_later(self._timeouts.body_s, self._write_stalled)

    def resume_writing(self) -> None:
        super().resume_writing()  # type: ignore[misc]
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _sync(self, *, got_data: bool) -> None:
        if self.transport.is_closing():
            self._cancel()
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            phase = Phase.BODY if cycle.more_body else Phase.HANDLING
        elif got_data or self._phase is Phase.HEADERS:
            phase = Phase.HEADERS
        else:
            phase = Phase.IDLE
        # Headers keep the deadline set by their first byte; a body's restarts on progress.
        if phase is not self._phase or (phase is Phase.BODY and got_data):
            self._phase = phase
            self._arm(phase)

    def _arm(self, phase: Phase) -> None:
        self._cancel()
        limit = self._limit(phase)
        if limit is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(limit, self._expired, phase)

    def _limit(self, phase: Phase) -> float | None:
        return {
            Phase.IDLE: self._timeouts.idle_s,
            Phase.HEADERS: self._timeouts.header_s,
            Phase.BODY: self._timeouts.body_s,
            Phase.HANDLING: None,
        }[phase]

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self, phase: Phase) -> None:
        self._timer = None
        if phase is not self._phase or self.transport.is_closing():
            return
        if phase is Phase.BODY and self.flow.read_paused:
            self._arm(phase)  # the server stopped reading, not the peer: wait on
            return
        limit = self._limit(phase)
        self._close(_WHY[phase].format(t=limit))

    def _write_stalled(self) -> None:
        self._write_timer = None
        if not self.transport.is_closing():
            self._close(_WHY[Phase.HANDLING].format(t=self._timeouts.body_s))

    def _close(self, why: str) -> None:
        peer = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.warning("closed the connection from %s: %s", peer, why)
        self.transport.close()
