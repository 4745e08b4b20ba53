"""Reading the privacy ledger back: lines, chain and head verified, two crash states repaired."""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from services.node.ledger_entry import HEX64, LedgerEntry, ReleaseKey, ReleaseKind
from services.node.ledger_files import (
    FORMAT,
    GENESIS,
    HEAD_FILE,
    LEDGER_FILE,
    PRIVACY_DIR,
    digest,
    integrity_error,
    write_head,
)
from shared.privacy.accounting import rdp_steps
from shared.schemas import PrivacySpend

log = logging.getLogger("fedseg.node.ledger")


class _RecordError(ValueError):
    """A record that does not read as the format says; the sentence says why."""


def load_ledger(state_dir: Path) -> tuple[dict[str, Any], list[LedgerEntry], list[str]]:
    """Header, entries and line hashes of the ledger, verified against its head."""
    folder = state_dir / PRIVACY_DIR
    ledger, head_path = folder / LEDGER_FILE, folder / HEAD_FILE
    for path, other in ((ledger, head_path), (head_path, ledger)):
        if not path.exists():
            raise integrity_error(state_dir, path, f"is missing, but {other.name} exists")
    data = ledger.read_bytes()
    complete, _, torn = data.rpartition(b"\n")
    lines = complete.split(b"\n") if complete else []
    header: dict[str, Any] = {}
    entries: list[LedgerEntry] = []
    hashes: list[str] = []
    seen: set[ReleaseKey] = set()
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise _RecordError("is not a JSON object")
            if record.get("prev") != (hashes[-1] if hashes else GENESIS):
                raise _RecordError(
                    "does not follow the line before it: an earlier line was changed"
                )
            if number == 1:
                header = _header(record)
            else:
                entries.append(_entry(record, number - 1, seen))
                seen.add(entries[-1].key)
        except ValueError as exc:
            problem = str(exc) if isinstance(exc, _RecordError) else "is not valid"
            raise integrity_error(state_dir, ledger, f"line {number} {problem}") from None
        hashes.append(digest(line))
    if not header:
        raise integrity_error(state_dir, ledger, "has no header line")
    try:
        head = json.loads(head_path.read_bytes())
        head_id, head_seq, head_hash = str(head["ledger_id"]), int(head["seq"]), str(head["hash"])
    except (ValueError, KeyError, TypeError):
        raise integrity_error(state_dir, head_path, "is unreadable") from None
    if head_id != header["ledger_id"]:
        raise integrity_error(
            state_dir, head_path, f"belongs to ledger {head_id}, not {header['ledger_id']}"
        )
    seq = len(entries)
    if head_seq == seq and head_hash == hashes[-1]:
        if torn:
            with ledger.open("r+b") as handle:
                handle.truncate(len(complete) + 1)
                os.fsync(handle.fileno())
            log.warning(
                "%s: dropped a torn last line (%d bytes) left by a crash while recording; "
                "its release was never sent",
                ledger, len(torn),
            )  # fmt: skip
        return header, entries, hashes
    if seq >= 1 and head_seq == seq - 1 and head_hash == hashes[-2] and not torn:
        log.warning(
            "%s: entry %d was recorded but a crash kept it from the head; counting it",
            ledger, seq,
        )  # fmt: skip
        write_head(head_path, header["ledger_id"], seq, hashes[-1])
        return header, entries, hashes
    if head_seq > seq:
        problem = f"holds {seq} releases but {HEAD_FILE} says {head_seq}: releases were removed"
    elif head_seq == seq:
        problem = "does not end with the line its head names: the last line was changed"
    else:
        problem = f"holds {seq} releases but {HEAD_FILE} says only {head_seq}"
    raise integrity_error(state_dir, ledger, problem)


def _field(record: dict[str, Any], name: str, kind: type[object]) -> Any:
    value = record.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _RecordError(f"has no valid {name}")
    return value


def _header(record: dict[str, Any]) -> dict[str, Any]:
    if record.get("type") != "header":
        raise _RecordError("is not a ledger header")
    if record.get("format") != FORMAT:
        raise _RecordError(
            f"has format {record.get('format')!r}; this fedseg reads format {FORMAT}"
        )
    if not re.fullmatch(r"[0-9a-f]{32}", _field(record, "ledger_id", str)):
        raise _RecordError("has no valid ledger_id")
    _field(record, "created_at", str)
    return record


def _entry(record: dict[str, Any], seq: int, seen: set[ReleaseKey]) -> LedgerEntry:
    if record.get("type") != "release" or _field(record, "seq", int) != seq:
        raise _RecordError(f"is not release {seq}")
    key = ReleaseKey(
        _field(record, "federation", str),
        _field(record, "run_id", int),
        _field(record, "round", int),
        ReleaseKind(_field(record, "kind", str)),
    )
    if key in seen:
        raise _RecordError(f"records {key} a second time")
    spends = tuple(PrivacySpend.model_validate(s) for s in _field(record, "spends", list))
    for spend in spends:
        rdp_steps(spend)
    if not spends:
        raise _RecordError("has no spends")
    sha256 = _field(record, "sha256", str)
    if not HEX64.fullmatch(sha256):
        raise _RecordError("has no valid sha256")
    recorded_at = datetime.fromisoformat(_field(record, "recorded_at", str))
    return LedgerEntry(seq, key, spends, sha256, recorded_at)
