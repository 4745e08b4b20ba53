"""The aggregator's one interface to durable state: every method is one transaction."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from services.aggregator.core.blobs import BlobStore
from services.aggregator.core.db import make_session_factory, upgrade_schema
from services.aggregator.state import health, nodes, rounds, runs, updates, views
from services.aggregator.state.cache import Generation, SettledRounds, StatusCache
from services.aggregator.state.folds import RoundSums
from services.aggregator.state.models import ModelVersion, Round, Run, Update
from services.aggregator.state.updates import Received
from shared.errors import NotFoundError
from shared.identity import Identity, is_valid_name
from shared.schemas import (
    Announcement,
    Decline,
    EvaluationReport,
    NodeFailure,
    NodeView,
    RoundState,
    RoundView,
    RunCreate,
    RunState,
    RunView,
    TaskPoll,
    UpdateReceipt,
)

log = logging.getLogger("fedseg.aggregator")


def utc_now() -> datetime:
    return datetime.now(UTC)


def _nothing(_phase: str) -> None:
    return None


class Federation:
    """Runs, rounds, updates and nodes, backed by SQL (SQLite or PostgreSQL) and blobs."""

    def __init__(
        self,
        engine: Engine,
        blobs: BlobStore,
        clock: Callable[[], datetime] = utc_now,
        offline_after: timedelta = health.OFFLINE_AFTER,
    ) -> None:
        self.engine = engine
        self.offline_after = offline_after
        self.blobs = blobs
        self.clock = clock
        self._sessions: sessionmaker[Session] = make_session_factory(engine)
        self._status = StatusCache(Generation(self._sessions))
        self._settled = SettledRounds()
        self._model_cache: dict[str, bytes] = {}
        self._cache_lock = threading.Lock()
        self.update_seam: updates.Seam = _nothing
        """Called inside ``accept_update`` around the round's lock (a test seam)."""
        self.sums = RoundSums()
        self._folder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fedseg-fold")

    def migrate(self) -> None:
        upgrade_schema(self.engine)

    def recover(self) -> None:
        """After a restart: drop half-written uploads, then finish interrupted transitions."""
        removed = self.blobs.clear_temporary()
        if removed:
            log.info("removed %d temporary files of interrupted uploads", removed)
        orphans = self._remove_orphan_blobs()
        if orphans:
            log.info("removed %d stored blobs that no row references (interrupted writes)", orphans)
        while self.advance():
            pass

    def _remove_orphan_blobs(self) -> int:
        with self._sessions() as session:
            referenced = set(session.scalars(select(ModelVersion.sha256)))
            referenced.update(session.scalars(select(Update.sha256).where(Update.has_blob)))
            referenced.update(
                session.scalars(select(Round.server_state).where(Round.server_state.is_not(None)))
            )
        orphans = [sha for sha in self.blobs.digests() if sha not in referenced]
        for sha in orphans:
            self.blobs.remove(sha)
        return len(orphans)

    # --- runs (admin) ---
    def create_run(self, admin: Identity, body: RunCreate) -> RunView:
        with self._sessions.begin() as session:
            run = runs.create_run(session, self.blobs, body, admin.name, self.clock())
            session.flush()
            log.info(
                "run %d created by %s: %d rounds, nodes %s",
                run.id,
                admin.name,
                run.rounds,
                ", ".join(run.expected_nodes),
            )
            return views.run_view(session, run)

    def set_run_state(self, run_id: int, target: RunState) -> RunView:
        with self._sessions.begin() as session:
            run = runs.set_run_state(session, run_id, target, self.clock())
            session.flush()
            log.info("run %d is now %s", run_id, target)
            return views.run_view(session, run)

    # --- nodes ---
    def announce(self, identity: Identity, body: Announcement) -> NodeView:
        with self._sessions.begin() as session:
            nodes.announce(session, identity, body, self.clock())
        return next(v for v in self.list_nodes() if v.name == identity.name)

    def poll(self, identity: Identity) -> TaskPoll:
        with self._sessions.begin() as session:
            now = self.clock()
            nodes.touch(session, identity, now)
            return rounds.poll_task(session, identity.name, now)

    def accept_update(
        self, identity: Identity, run_id: int, number: int, received: Received
    ) -> tuple[UpdateReceipt, bool]:
        with self._sessions.begin() as session:
            now = self.clock()
            result = updates.accept_update(
                session, self.blobs, identity.name, run_id, number, received, now,
                self.update_seam,
            )  # fmt: skip
            nodes.touch(session, identity, now).failure = None  # it contributes again
        if result[1]:
            # Shutting down (RuntimeError): the round's close folds it from disk instead.
            with contextlib.suppress(RuntimeError):
                self._folder.submit(self._fold, run_id, number, identity.name)
        return result

    def _fold(self, run_id: int, number: int, node: str) -> None:
        """Add a newly accepted update to its round's running sum (in the fold thread)."""
        try:
            with self._sessions() as session:
                round_id = session.scalar(
                    select(Round.id).where(Round.run_id == run_id, Round.number == number)
                )
                if round_id is not None:
                    self.sums.fold(session, self.blobs, round_id, node)
        except Exception as exc:
            log.warning("could not add node %s's update to round %d's running sum (%s: %s); "
                        "the round's close reads it from disk instead",
                        node, number, type(exc).__name__, exc)  # fmt: skip

    def close(self) -> None:
        """Stop the fold thread (a fold in progress finishes; queued ones are dropped: the
        close of their round rebuilds them). Call before disposing of the engine."""
        self._folder.shutdown(wait=True, cancel_futures=True)

    def wait_for_folds(self) -> None:
        """Block until every update accepted so far is folded in (tests, benchmarks)."""
        self._folder.submit(lambda: None).result()

    def accept_evaluation(
        self, identity: Identity, run_id: int, number: int, report: EvaluationReport
    ) -> tuple[UpdateReceipt, bool]:
        with self._sessions.begin() as session:
            now = self.clock()
            result = updates.accept_evaluation(session, identity.name, run_id, number, report, now)
            nodes.touch(session, identity, now).failure = None
            return result

    def accept_decline(
        self, identity: Identity, run_id: int, number: int, decline: Decline
    ) -> tuple[UpdateReceipt, bool]:
        with self._sessions.begin() as session:
            now = self.clock()
            result = updates.accept_decline(session, identity.name, run_id, number, decline, now)
            nodes.touch(session, identity, now)
            log.warning("node %s declined round %d: %s", identity.name, number, decline.reason)
            return result

    def is_revoked(self, serial: int) -> bool:
        with self._sessions() as session:
            return nodes.is_revoked(session, serial)

    def revoke(self, serial: int, name: str, reason: str | None) -> list[int]:
        """Deny the certificate and take its holder out of every active run at once.

        Returns the ids of the runs it was removed from; their open rounds close as soon
        as the remaining nodes have answered.
        """
        with self._sessions.begin() as session:
            nodes.revoke(session, serial, name, reason, self.clock())
            # A name fedseg refuses was never let in, so it is in no run to be removed from.
            touched = (
                runs.remove_node_everywhere(session, name, "certificate revoked")
                if is_valid_name(name)
                else []
            )
        if touched:
            log.warning("node %s revoked: removed from run(s) %s", name, touched)
        return touched

    def remove_node(self, run_id: int, name: str) -> RunView:
        """Take a node out of one active run without revoking its certificate."""
        with self._sessions.begin() as session:
            run = runs.get_run(session, run_id)
            runs.remove_node(session, run, name, "removed by an administrator")
            session.flush()
            log.warning("node %s removed from run %d by an administrator", name, run_id)
            return views.run_view(session, run)

    def report_failure(self, identity: Identity, failure: NodeFailure) -> None:
        what = "retrying" if failure.will_retry else "stopped"
        reason = (
            f"{failure.kind} failure ({failure.error_type}), {what}; "
            "the details are in the hospital's node log"
        )
        with self._sessions.begin() as session:
            nodes.report_failure(session, identity, reason, self.clock())
        log.warning("node %s reported a %s", identity.name, reason)

    def heartbeat(self, identity: Identity) -> None:
        with self._sessions.begin() as session:
            nodes.heartbeat(session, identity, self.clock())

    # --- the state machine ---
    def advance(self) -> bool:
        """One step of every running run; True if a transition committed."""
        with self._sessions() as session:
            changed = rounds.advance(session, self.blobs, self.sums, self.clock())
            session.commit()
            if len(self.sums):
                self.sums.keep_only(
                    set(session.scalars(select(Round.id).where(Round.state == RoundState.OPEN)))
                )
            return changed

    # --- status ---
    # Status answers come from StatusCache (state/cache.py): computed once per write.
    def list_runs(self) -> list[RunView]:
        return self._status.get("runs", self._list_runs)

    def _list_runs(self) -> list[RunView]:
        with self._sessions() as session:
            return [
                views.run_view(session, r) for r in session.scalars(select(Run).order_by(Run.id))
            ]

    def get_run(self, run_id: int) -> RunView:
        return self._status.get(("run", run_id), lambda: self._get_run(run_id))

    def _get_run(self, run_id: int) -> RunView:
        with self._sessions() as session:
            return views.run_view(session, runs.get_run(session, run_id))

    def list_rounds(self, run_id: int | None = None) -> list[RoundView]:
        """Rounds of ``run_id``, or of the newest run when None."""
        return self._status.get(("rounds", run_id), lambda: self._list_rounds(run_id))

    def _list_rounds(self, run_id: int | None) -> list[RoundView]:
        with self._sessions() as session:
            run = runs.get_run(session, run_id) if run_id is not None else runs.latest_run(session)
            return [] if run is None else views.round_views(session, run, self._settled)

    def get_round(self, run_id: int, number: int) -> RoundView:
        with self._sessions() as session:
            run = runs.get_run(session, run_id)
            rnd = session.scalars(
                select(Round).where(Round.run_id == run_id, Round.number == number)
            ).first()
            if rnd is None:
                raise NotFoundError(f"run {run_id} has no round {number}")
            return views.round_view(session, run, rnd)

    def list_nodes(self) -> list[NodeView]:
        # Health depends on the clock (a silent node turns offline): recomputed each second.
        now = self.clock()
        return self._status.get("nodes", lambda: self._list_nodes(now), stamp=int(now.timestamp()))

    def _list_nodes(self, now: datetime) -> list[NodeView]:
        with self._sessions() as session:
            return views.node_views(session, now, self.offline_after)

    def model_path(self, sha256: str) -> Path:
        """A published model version's blob; updates are not downloadable."""
        with self._sessions() as session:
            if session.get(ModelVersion, sha256) is None:
                raise NotFoundError(f"no model version {sha256}")
        return self.blobs.open_path(sha256)

    def model_bytes(self, sha256: str) -> bytes:
        """A model version's bytes, kept in memory for the few versions nodes are fetching.

        Every node downloads the same version at the start of a round; all of them are
        served from this one copy (routes/models.py sends it by chunk, without copying).
        At most two versions are held.
        """
        with self._cache_lock:
            cached = self._model_cache.get(sha256)
        if cached is not None:
            return cached
        data = self.model_path(sha256).read_bytes()
        with self._cache_lock:
            self._model_cache[sha256] = data
            while len(self._model_cache) > 2:
                self._model_cache.pop(next(iter(self._model_cache)))
        return data
