"""Status answers computed once per change of durable state, not once per request.

Operators' dashboards and Prometheus poll the status routes (runs, rounds, nodes,
metrics) many times a second, and each answer reads the run's whole history. Between two
writes the answer cannot change, except for what depends on the clock (a node turning
``offline``), so ``StatusCache`` keeps each answer until the next committed write, or
until the clock ``stamp`` its caller gives (e.g. the current second) moves on.

``Generation`` counts committed writes: it listens to the session factory, so every
transaction that flushed a row or ran an INSERT, UPDATE or DELETE moves it on once it has
committed (never before: a reader must not cache what it cannot see yet). The count is
this process's; fedseg runs one aggregator process per federation.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

from shared.schemas import RoundView

T = TypeVar("T")


class Generation:
    """How many write transactions of this process have committed."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.value = 0
        self._lock = threading.Lock()
        self._mark = f"fedseg-wrote-{id(self)}"  # each Generation keeps its own mark
        event.listen(sessions, "after_flush", self._flushed)
        event.listen(sessions, "do_orm_execute", self._executed)
        event.listen(sessions, "after_commit", self._committed)

    def bump(self) -> None:
        with self._lock:
            self.value += 1

    def _flushed(self, session: Session, _context: Any) -> None:
        session.info[self._mark] = True

    def _executed(self, state: ORMExecuteState) -> None:
        if state.is_insert or state.is_update or state.is_delete:
            state.session.info[self._mark] = True

    def _committed(self, session: Session) -> None:
        if session.info.pop(self._mark, False):
            self.bump()


class StatusCache:
    """Answers by key, each good until the next write or until its ``stamp`` changes."""

    def __init__(self, generation: Generation) -> None:
        self.generation = generation
        self._answers: dict[Hashable, tuple[int, Hashable, object]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], T], stamp: Hashable = None) -> T:
        """The kept answer for ``key`` if nothing was written since and ``stamp`` is the
        same, else ``compute()`` (kept for the next caller). Callers must not mutate it."""
        seen = self.generation.value  # read before computing: a later write invalidates it
        with self._lock:
            kept = self._answers.get(key)
        if kept is not None and kept[0] == seen and kept[1] == stamp:
            return kept[2]  # type: ignore[return-value]
        answer = compute()
        with self._lock:
            self._answers[key] = (seen, stamp, answer)
        return answer


class SettledRounds:
    """Views of rounds that can no longer change (closed or failed), by round id.

    A settled round's answers, model and detail are final (only an open round's updates
    are ever excluded), so its view is built once; the run's expected nodes, which can
    still change, are filled in on every read.
    """

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._views: dict[int, RoundView] = {}
        self._lock = threading.Lock()

    def get(self, round_id: int) -> RoundView | None:
        with self._lock:
            return self._views.get(round_id)

    def put(self, round_id: int, view: RoundView) -> None:
        with self._lock:
            if len(self._views) >= self.limit:
                self._views.pop(next(iter(self._views)))
            self._views[round_id] = view
