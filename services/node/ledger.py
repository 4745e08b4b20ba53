"""The node's privacy ledger: every release it made, keyed and numbered by the node itself.

The adversary is the aggregator: it may re-send a task, with a fresh nonce, as often as it
likes. So a release is keyed by what the node knows, not what the aggregator says: the
federation (the SHA-256 of the CA certificate the node trusts), the run, the round and the
kind of release. A key is recorded once; a task for a recorded key gets the archived bytes
of that release again (no new noise, no new cost), or nothing.

Layout in the state folder (folders 0700, files 0600, JSON only, never pickle):

- ``privacy/ledger.jsonl``: append-only. Line 1 is a header (ledger_id, created_at,
  format; after a reset the previous ledger's id, seq and head hash and the operator's
  reason; after an import, the old file's name). Every other line is one release: seq
  1, 2, 3..., key, spends, SHA-256 of the bytes sent, time. Each line carries ``prev``,
  the SHA-256 of the previous line's bytes (without its newline; 64 zeros for the
  header), so an edit of any earlier line breaks the chain.
- ``privacy/ledger.head``: ledger_id, seq and hash of the last line, replaced atomically
  after each append, so a shortened ledger (lines dropped) is detected: the head says more.
- ``privacy/releases/<seq>.bin``: the bytes of each release of the newest round of every
  (federation, run, kind); older rounds' bytes are deleted (their entries stay forever).
- ``node-state.json``: written when the ledger is created; names its ledger_id. A new
  ledger is created only where no node state is (this marker, ``models/``, ``pending/``,
  ``privacy/releases/``, an imported or archived old ledger).

Writes are write-ahead: ``record`` archives the bytes (temp file, fsync, rename), appends
the line (fsync), then replaces the head; the caller sends only after it returns. So the
two crash states are repaired on open, with a warning: a torn last line (no newline, head
at the line before) is dropped, its bytes never left; a complete last line the head does
not yet count is counted (only ever adds spend); a lost marker is written again. Anything
else that does not add up (a ledger missing next to node state, a missing head, a broken
chain, a head that says more, a marker naming another ledger, a head another writer moved
on) raises LedgerIntegrityError: the budget is never silently reset. ``reset_ledger`` is
the explicit, logged operator action that starts over. The chain detects accidents and
careless edits, not a local administrator rewriting it all.

An old SQLite ledger (``privacy-ledger.db``) is imported once: its rows become entries of
federation ``unknown-imported`` with the SHA-256 of no bytes (nothing archived), a
Gaussian row restated in sensitivity units as its old accounting counted it (sigma / 2,
sample rate 1, one step), then the file is renamed ``privacy-ledger.db.imported``.
Composition is ``shared.privacy.accounting.compose``.

The files are named and written in ``ledger_files``, read back and verified in
``ledger_verify``; the keys and entries are ``ledger_entry``, the import ``ledger_import``,
the reset ``ledger_reset``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from services.node.ledger_entry import (
    IMPORTED_FEDERATION,
    IMPORTED_SHA256,
    LedgerEntry,
    ReleaseKey,
    ReleaseKind,
    federation_id,
)
from services.node.ledger_files import (
    FORMAT,
    HEAD_FILE,
    LEDGER_FILE,
    LEGACY_DB,
    MARKER_FILE,
    MISSING,
    PRIVACY_DIR,
    RELEASES_DIR,
    append,
    create_ledger,
    digest,
    encode_line,
    entry_record,
    integrity_error,
    node_state,
    write_atomic,
    write_head,
    write_marker,
)
from services.node.ledger_import import legacy_entries
from services.node.ledger_reset import reset_ledger
from services.node.ledger_verify import load_ledger
from shared.errors import LedgerIntegrityError
from shared.privacy.accounting import compose
from shared.schemas import PrivacySpend, PrivacyTotal

__all__ = [
    "FORMAT",
    "HEAD_FILE",
    "IMPORTED_FEDERATION",
    "IMPORTED_SHA256",
    "LEDGER_FILE",
    "LEGACY_DB",
    "MARKER_FILE",
    "MISSING",
    "PRIVACY_DIR",
    "RELEASES_DIR",
    "LedgerEntry",
    "PrivacyLedger",
    "ReleaseKey",
    "ReleaseKind",
    "federation_id",
    "reset_ledger",
]

log = logging.getLogger("fedseg.node.ledger")


class PrivacyLedger:
    """The node's releases in ``state_dir/privacy`` (module docstring: the rules)."""

    def __init__(self, state_dir: Path, target_delta: float = 1e-5) -> None:
        if not 0.0 < target_delta < 1.0:
            raise ValueError(f"target_delta must be in (0, 1), got {target_delta}")
        self.state_dir, self.target_delta = state_dir, target_delta
        self._folder = state_dir / PRIVACY_DIR
        self._ledger, self._head = self._folder / LEDGER_FILE, self._folder / HEAD_FILE
        self._releases = self._folder / RELEASES_DIR
        state_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(state_dir / f"{PRIVACY_DIR}.partial", ignore_errors=True)
        legacy = state_dir / LEGACY_DB
        if not self._ledger.exists() and not self._head.exists():
            if legacy.exists() and not (state_dir / MARKER_FILE).exists():
                create_ledger(state_dir, {"imported_from": LEGACY_DB}, legacy_entries(legacy))
            elif found := node_state(state_dir):
                raise integrity_error(
                    state_dir,
                    self._ledger,
                    "the privacy ledger is missing, but the state folder holds node state ("
                    + ", ".join(str(p.relative_to(state_dir)) for p in found)
                    + "), so its budget history would be lost",
                )
            else:
                create_ledger(state_dir, {}, [])
        self._header, self._entries, self._hashes = load_ledger(state_dir)
        self._by_key = {e.key: e for e in self._entries}
        self._check_marker()
        imported = legacy.with_name(LEGACY_DB + ".imported")
        finished = imported.exists() or not legacy.exists()
        if self._header.get("imported_from") == LEGACY_DB and not finished:
            legacy.rename(imported)  # the import was interrupted before this rename
            log.info("imported the old privacy ledger %s (now %s)", legacy, imported.name)
        for orphan in [*self._folder.glob(".*.tmp"), *self._releases.glob(".*.tmp")]:
            orphan.unlink()
        for orphan in self._releases.glob("*.bin"):  # archived by a record() that never ended
            if not orphan.stem.isdigit() or int(orphan.stem) > len(self._entries):
                orphan.unlink()

    @property
    def ledger_id(self) -> str:
        return str(self._header["ledger_id"])

    @property
    def header(self) -> dict[str, object]:
        """The ledger's first line: ledger_id, created_at, format, and any reset or import."""
        return dict(self._header)

    def find(self, key: ReleaseKey) -> LedgerEntry | None:
        return self._by_key.get(key)

    def entries(self) -> list[LedgerEntry]:
        return list(self._entries)

    def payload(self, entry: LedgerEntry) -> bytes | None:
        """The archived bytes of ``entry`` if still kept and unchanged, else None."""
        if self._by_key.get(entry.key) != entry:
            return None
        path = self._releases / f"{entry.seq}.bin"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            log.warning("%s does not match ledger entry %d (sha256); not using it", path, entry.seq)
            return None
        return data

    def record(
        self, key: ReleaseKey, spends: Sequence[PrivacySpend], payload: bytes
    ) -> LedgerEntry:
        """Put a release on the ledger, durably, before its ``payload`` may be sent."""
        if (known := self._by_key.get(key)) is not None:
            raise ValueError(
                f"release {key} is already on the ledger as entry {known.seq}; send its "
                "archived bytes again (find() and payload()) instead of a new release"
            )
        if not spends:
            raise ValueError(f"release {key} must state at least one privacy spend")
        compose(spends, self.target_delta)  # a spend the accountant cannot read fails here
        entry = LedgerEntry(
            seq=len(self._entries) + 1,
            key=key,
            spends=tuple(spends),
            sha256=hashlib.sha256(payload).hexdigest(),
            recorded_at=datetime.now(UTC),
        )
        self._check_head()
        line = encode_line(entry_record(entry, self._hashes[-1]))
        write_atomic(self._releases / f"{entry.seq}.bin", payload)
        size = self._ledger.stat().st_size
        try:
            append(self._ledger, line + b"\n")
        except BaseException:
            os.truncate(self._ledger, size)  # never leave a torn line for the next append
            raise
        self._hashes.append(digest(line))
        self._entries.append(entry)
        self._by_key[key] = entry
        write_head(self._head, self.ledger_id, entry.seq, self._hashes[-1])
        self._retain(key)
        return entry

    def run_total(
        self, federation: str, run_id: int, extra: Sequence[PrivacySpend] = ()
    ) -> PrivacyTotal:
        """Composition of what was recorded for one run of one federation, plus ``extra``."""
        spends = [
            s
            for e in self._entries
            if (e.key.federation, e.key.run_id) == (federation, run_id)
            for s in e.spends
        ]
        return compose([*spends, *extra], self.target_delta)

    def federation_total(self, federation: str, extra: Sequence[PrivacySpend] = ()) -> PrivacyTotal:
        """What this node tells one federation: its releases to that federation, composed.

        ``seq`` counts those releases only, so no federation learns how much the node
        released to others; the budget still holds over the whole ledger (``total``).
        """
        mine = [e for e in self._entries if e.key.federation == federation]
        total = compose([*(s for e in mine for s in e.spends), *extra], self.target_delta)
        return total.model_copy(update={"ledger_id": self.ledger_id, "seq": len(mine)})

    def total(self, extra: Sequence[PrivacySpend] = ()) -> PrivacyTotal:
        """Composition of every recorded spend plus ``extra``, with ledger_id and last seq."""
        spends = [s for e in self._entries for s in e.spends]
        total = compose([*spends, *extra], self.target_delta)
        return total.model_copy(update={"ledger_id": self.ledger_id, "seq": len(self._entries)})

    @staticmethod
    def reset(state_dir: Path, reason: str) -> Path:
        """See ``reset_ledger``."""
        return reset_ledger(state_dir, reason)

    def _retain(self, key: ReleaseKey) -> None:
        group = [
            e
            for e in self._entries
            if (e.key.federation, e.key.run_id, e.key.kind)
            == (key.federation, key.run_id, key.kind)
        ]
        newest = max(e.key.round for e in group)
        for old in group:
            if old.key.round < newest:
                (self._releases / f"{old.seq}.bin").unlink(missing_ok=True)

    def _check_head(self) -> None:
        """Refuse to append if another writer moved the ledger on since it was read."""
        try:
            head = json.loads(self._head.read_bytes())
            current = (head["seq"], head["hash"]) == (len(self._entries), self._hashes[-1])
        except (OSError, ValueError, KeyError, TypeError):
            current = False
        if not current:
            raise LedgerIntegrityError(
                f"{self._head} no longer says what this process read: another PrivacyLedger "
                "wrote to the same state folder, or the file was changed; nothing was recorded"
            )

    def _check_marker(self) -> None:
        marker = self.state_dir / MARKER_FILE
        if not marker.exists():
            log.warning("%s was missing; written again for ledger %s", marker, self.ledger_id)
            write_marker(self.state_dir, self.ledger_id, str(self._header["created_at"]))
            return
        try:
            named = json.loads(marker.read_bytes())["ledger_id"]
        except (ValueError, KeyError, TypeError):
            raise integrity_error(
                self.state_dir, marker, "the node-state marker is unreadable"
            ) from None
        if named != self.ledger_id:
            raise integrity_error(
                self.state_dir,
                marker,
                f"the node-state marker names ledger {named}, but {self._ledger} is ledger "
                f"{self.ledger_id}: the privacy folder was replaced",
            )
