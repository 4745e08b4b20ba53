"""The privacy ledger's files: names, modes, durable writes, creation (ledger module: rules)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.node.ledger_entry import LedgerEntry
from shared.errors import LedgerIntegrityError

FORMAT = 1
PRIVACY_DIR = "privacy"
LEDGER_FILE = "ledger.jsonl"
HEAD_FILE = "ledger.head"
RELEASES_DIR = "releases"
MARKER_FILE = "node-state.json"
LEGACY_DB = "privacy-ledger.db"
MISSING = "missing"
GENESIS = "0" * 64
_FILE_MODE, _DIR_MODE = 0o600, 0o700


def integrity_error(state_dir: Path, path: Path, problem: str) -> LedgerIntegrityError:
    return LedgerIntegrityError(
        f"{path}: {problem}; restore it from backup, or start over with "
        f"`fedseg-node ledger reset --state-dir {state_dir} --reason TEXT`"
    )


def node_state(state_dir: Path) -> list[Path]:
    """What shows that this state folder was used by a node before."""
    names = (
        MARKER_FILE,
        "models",
        "pending",
        f"{PRIVACY_DIR}/{RELEASES_DIR}",
        LEGACY_DB + ".imported",
    )
    found = [state_dir / name for name in names]
    return [p for p in found if p.exists()] + sorted(state_dir.glob("privacy-archive-*"))


def encode_line(record: dict[str, Any]) -> bytes:
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return text.encode("ascii")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def mkdir_private(path: Path) -> None:
    path.mkdir(mode=_DIR_MODE, exist_ok=True)
    path.chmod(_DIR_MODE)  # mkdir's mode passes through the umask; chmod does not


def fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_atomic(path: Path, data: bytes) -> None:
    """Temp file in the same folder (0600 from its creation), fsync, rename, fsync the folder."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), _FILE_MODE)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write_head(path: Path, ledger_id: str, seq: int, last: str) -> None:
    write_atomic(path, encode_line({"ledger_id": ledger_id, "seq": seq, "hash": last}) + b"\n")


def write_marker(state_dir: Path, ledger_id: str, created_at: str) -> None:
    write_atomic(
        state_dir / MARKER_FILE,
        encode_line({"ledger_id": ledger_id, "created_at": created_at}) + b"\n",
    )


def entry_record(entry: LedgerEntry, prev: str) -> dict[str, Any]:
    return {
        "type": "release",
        "prev": prev,
        "seq": entry.seq,
        "federation": entry.key.federation,
        "run_id": entry.key.run_id,
        "round": entry.key.round,
        "kind": entry.key.kind.value,
        "spends": [s.model_dump(mode="json") for s in entry.spends],
        "sha256": entry.sha256,
        "recorded_at": entry.recorded_at.isoformat(),
    }


def create_ledger(state_dir: Path, extra: dict[str, Any], entries: Sequence[LedgerEntry]) -> str:
    """Write a complete ledger in privacy.partial/, then rename it to privacy/; the marker."""
    partial = state_dir / f"{PRIVACY_DIR}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    mkdir_private(partial)
    mkdir_private(partial / RELEASES_DIR)
    ledger_id, created_at = secrets.token_hex(16), datetime.now(UTC).isoformat()
    header = {"type": "header", "prev": GENESIS, "format": FORMAT, "ledger_id": ledger_id}
    lines = [encode_line({**header, "created_at": created_at, **extra})]
    for entry in entries:
        lines.append(encode_line(entry_record(entry, digest(lines[-1]))))
    write_atomic(partial / LEDGER_FILE, b"".join(line + b"\n" for line in lines))
    write_head(partial / HEAD_FILE, ledger_id, len(entries), digest(lines[-1]))
    partial.rename(state_dir / PRIVACY_DIR)
    fsync_dir(state_dir)
    write_marker(state_dir, ledger_id, created_at)
    return ledger_id


def describe_ledger(state_dir: Path) -> dict[str, object]:
    """The old ledger's id, seq and head hash, each "missing" where it cannot be read."""
    folder = state_dir / PRIVACY_DIR
    described: dict[str, object] = {"ledger_id": MISSING, "seq": MISSING, "head_hash": MISSING}
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, IndexError):
        first = (folder / LEDGER_FILE).read_bytes().split(b"\n", 1)[0]
        described["ledger_id"] = str(json.loads(first)["ledger_id"])
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        head = json.loads((folder / HEAD_FILE).read_bytes())
        described.update(ledger_id=str(head["ledger_id"]), seq=int(head["seq"]))
        described["head_hash"] = str(head["hash"])
    return described
