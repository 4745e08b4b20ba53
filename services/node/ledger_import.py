"""The one-time import of the old SQLite privacy ledger (privacy-ledger.db) as ledger entries."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from services.node.ledger_entry import (
    IMPORTED_FEDERATION,
    IMPORTED_SHA256,
    LedgerEntry,
    ReleaseKey,
    ReleaseKind,
)
from services.node.ledger_files import LEGACY_DB
from shared.errors import LedgerIntegrityError
from shared.privacy.accounting import rdp_steps
from shared.schemas import Mechanism, PrivacySpend


def legacy_entries(path: Path) -> list[LedgerEntry]:
    """The rows of an old SQLite ledger, as entries (one release per row, as it counted)."""
    try:
        with contextlib.closing(sqlite3.connect(path)) as db:
            rows = db.execute(
                "SELECT run_id, round, mechanism, epsilon, delta, accounting, parameters,"
                " recorded_at FROM releases ORDER BY recorded_at, run_id, round"
            ).fetchall()
        entries = []
        for seq, (run_id, number, mechanism, epsilon, delta, accounting, params, at) in enumerate(
            rows, start=1
        ):
            parameters = json.loads(params)
            if mechanism == Mechanism.GAUSSIAN and "sample_rate" not in parameters:
                # Old convention: sigma in units of the clip S, sensitivity 2 S, one release.
                sigma = float(parameters["noise_multiplier"])
                factor = float(parameters.get("sensitivity_factor", 2.0))
                parameters = {
                    "sigma": sigma,
                    "noise_multiplier": sigma / factor,
                    "sample_rate": 1.0,
                    "steps": 1,
                    "sensitivity_factor": factor,
                }
            spend = PrivacySpend(
                mechanism=Mechanism(mechanism),
                epsilon=epsilon,
                delta=delta,
                accounting=f"{accounting} (imported from {LEGACY_DB})",
                parameters=parameters,
            )
            rdp_steps(spend)
            recorded = datetime.fromisoformat(at)
            if recorded.tzinfo is None:
                recorded = recorded.replace(tzinfo=UTC)
            key = ReleaseKey(IMPORTED_FEDERATION, run_id, number, ReleaseKind.UPDATE)
            entries.append(LedgerEntry(seq, key, (spend,), IMPORTED_SHA256, recorded))
    except (sqlite3.Error, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LedgerIntegrityError(
            f"{path}: the old privacy ledger cannot be imported ({exc}); restore it from "
            f"backup, or start over with `fedseg-node ledger reset --state-dir {path.parent} "
            "--reason TEXT`"
        ) from None
    return entries
