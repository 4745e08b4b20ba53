"""The node's privacy ledger: every release it made, and what they add up to.

The ledger lives in the node's state folder (SQLite) and spans runs: a privacy budget is
about the hospital's data, not about one training run. Composition:

- pure epsilon-DP releases (SVT) add up by basic sequential composition
  (Dwork and Roth 2014, Theorem 3.14);
- Gaussian releases are composed with Renyi DP (Mironov 2017) by Opacus's RDPAccountant
  (``shared.privacy.gaussian``, same neighbouring relation as each release) and converted
  to (epsilon, delta) at the ledger's target delta;
- the two groups are then added (basic composition of the two guarantees);
- a release without a DP guarantee (none, partial sharing) makes the total epsilon
  infinite, reported as None.
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from shared.privacy.gaussian import composed_gaussian_epsilon
from shared.schemas import Mechanism, PrivacySpend, PrivacyTotal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS releases (
    run_id INTEGER NOT NULL,
    round INTEGER NOT NULL,
    mechanism TEXT NOT NULL,
    epsilon REAL,
    delta REAL NOT NULL,
    accounting TEXT NOT NULL,
    parameters TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (run_id, round)
)
"""


@dataclass(frozen=True)
class LedgerEntry:
    run_id: int
    round: int
    spend: PrivacySpend
    recorded_at: datetime


class PrivacyLedger:
    """Append-only record of releases, written before the bytes leave the node."""

    def __init__(self, path: Path, target_delta: float = 1e-5) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.target_delta = target_delta
        with self._connect() as db:
            db.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path)
        db.execute("PRAGMA synchronous=FULL")
        return db

    def record(self, run_id: int, number: int, spend: PrivacySpend) -> None:
        """Record a release (idempotent per run and round: a re-sent update is one release)."""
        with self._connect() as db:
            db.execute(
                "INSERT OR IGNORE INTO releases VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    number,
                    spend.mechanism.value,
                    spend.epsilon,
                    spend.delta,
                    spend.accounting,
                    json.dumps(spend.parameters),
                    datetime.now(UTC).isoformat(),
                ),
            )

    def entries(self) -> list[LedgerEntry]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT run_id, round, mechanism, epsilon, delta, accounting, parameters,"
                " recorded_at FROM releases ORDER BY recorded_at, run_id, round"
            ).fetchall()
        return [
            LedgerEntry(
                run_id=row[0],
                round=row[1],
                spend=PrivacySpend(
                    mechanism=Mechanism(row[2]),
                    epsilon=row[3],
                    delta=row[4],
                    accounting=row[5],
                    parameters=json.loads(row[6]),
                ),
                recorded_at=datetime.fromisoformat(row[7]),
            )
            for row in rows
        ]

    def total(self, extra: PrivacySpend | None = None) -> PrivacyTotal:
        """Cumulative spend of every recorded release, plus ``extra`` if given."""
        spends = [e.spend for e in self.entries()]
        if extra is not None:
            spends.append(extra)
        return compose(spends, self.target_delta)


def compose(spends: list[PrivacySpend], target_delta: float) -> PrivacyTotal:
    """The cumulative (epsilon, delta) of ``spends`` (module docstring: the method)."""
    if not spends:
        return PrivacyTotal(epsilon=0.0, delta=0.0, releases=0, accounting="nothing released")
    if any(s.epsilon is None for s in spends):
        return PrivacyTotal(
            epsilon=None,
            delta=0.0,
            releases=len(spends),
            accounting="unbounded: a release carried no DP guarantee",
        )
    pure = sum(float(s.epsilon or 0.0) for s in spends if s.mechanism != Mechanism.GAUSSIAN)
    gaussian = [s for s in spends if s.mechanism == Mechanism.GAUSSIAN]
    epsilon, delta, methods = pure, 0.0, ["basic composition"]
    if gaussian:
        sigmas = []
        for s in gaussian:
            sigma = s.parameters.get("noise_multiplier")
            if not isinstance(sigma, int | float) or sigma <= 0:
                raise ValueError("a Gaussian ledger entry lacks its noise_multiplier")
            sigmas.append(float(sigma))
        epsilon += composed_gaussian_epsilon(sigmas, target_delta)
        delta = target_delta
        methods.append(f"RDP (Opacus) at delta {target_delta:g} for Gaussian releases")
    if not math.isfinite(epsilon):
        return PrivacyTotal(epsilon=None, delta=delta, releases=len(spends), accounting="unbounded")
    return PrivacyTotal(
        epsilon=epsilon, delta=delta, releases=len(spends), accounting=", ".join(methods)
    )
