"""The operator's reset of the privacy ledger: the old folder archived, a new ledger naming it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from services.node.ledger_files import (
    LEGACY_DB,
    PRIVACY_DIR,
    create_ledger,
    describe_ledger,
    fsync_dir,
    mkdir_private,
)

log = logging.getLogger("fedseg.node.ledger")


def reset_ledger(state_dir: Path, reason: str) -> Path:
    """Start a new, empty ledger; the old privacy folder is kept. Returns the archive folder.

    The operator's explicit action (``fedseg-node ledger reset``), logged as a warning; the
    new header records the old ledger's id, seq and head hash (or "missing") and ``reason``.
    No node may be running on ``state_dir`` meanwhile (the command holds its lock).
    """
    reason = reason.strip()
    if not reason:
        raise ValueError("a ledger reset needs a reason; it is kept in the new ledger's header")
    state_dir.mkdir(parents=True, exist_ok=True)
    folder = state_dir / PRIVACY_DIR
    previous = describe_ledger(state_dir)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    archive, number = state_dir / f"privacy-archive-{stamp}", 1
    while archive.exists():
        number += 1
        archive = state_dir / f"privacy-archive-{stamp}-{number}"
    if folder.exists():
        folder.rename(archive)
    else:
        mkdir_private(archive)
    legacy = state_dir / LEGACY_DB
    if legacy.exists():
        legacy.rename(archive / LEGACY_DB)
    fsync_dir(state_dir)
    ledger_id = create_ledger(
        state_dir, {"previous": {**previous, "archive": archive.name}, "reason": reason}, []
    )
    log.warning(
        "the privacy budget history was reset by the operator (reason: %s): new ledger %s "
        "starts empty; the old ledger %s (seq %s) is kept in %s",
        reason, ledger_id, previous["ledger_id"], previous["seq"], archive,
    )  # fmt: skip
    return archive
