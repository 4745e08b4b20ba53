"""The node's privacy ledger: persistence, idempotency and composition."""

from __future__ import annotations

from pathlib import Path

import pytest
from opacus.accountants import RDPAccountant

from services.node.ledger import PrivacyLedger, compose
from shared.privacy.gaussian import ALPHAS
from shared.schemas import Mechanism, PrivacySpend


def svt(eps: float) -> PrivacySpend:
    return PrivacySpend(mechanism=Mechanism.SVT, epsilon=eps, accounting="SVT")


def gauss(sigma: float) -> PrivacySpend:
    return PrivacySpend(
        mechanism=Mechanism.GAUSSIAN,
        epsilon=1.0,
        delta=1e-5,
        accounting="RDP",
        parameters={"noise_multiplier": sigma},
    )


def test_pure_epsilon_releases_add_up(tmp_path: Path) -> None:
    ledger = PrivacyLedger(tmp_path / "ledger.db")
    ledger.record(1, 1, svt(0.5))
    ledger.record(1, 2, svt(0.25))
    total = ledger.total()
    assert (total.epsilon, total.delta, total.releases) == (0.75, 0.0, 2)
    assert total.accounting == "basic composition"


def test_record_is_idempotent_per_round_and_survives_restart(tmp_path: Path) -> None:
    PrivacyLedger(tmp_path / "ledger.db").record(1, 1, svt(0.5))
    reopened = PrivacyLedger(tmp_path / "ledger.db")
    reopened.record(1, 1, svt(0.5))  # a re-sent update is still one release
    assert reopened.total().releases == 1
    assert [(e.run_id, e.round, e.spend.epsilon) for e in reopened.entries()] == [(1, 1, 0.5)]


def test_gaussian_releases_compose_with_opacus_rdp(tmp_path: Path) -> None:
    ledger = PrivacyLedger(tmp_path / "ledger.db", target_delta=1e-5)
    for number in (1, 2, 3):
        ledger.record(1, number, gauss(1.1))
    ledger.record(1, 4, svt(0.5))
    # Replacement-neighbouring updates differ by up to 2 S: Opacus at sigma / 2.
    accountant = RDPAccountant()
    for _ in range(3):
        accountant.step(noise_multiplier=1.1 / 2, sample_rate=1.0)
    expected = accountant.get_epsilon(delta=1e-5, alphas=list(ALPHAS)) + 0.5
    total = ledger.total()
    assert total.epsilon == pytest.approx(expected, rel=1e-12)
    assert total.delta == 1e-5


def test_release_without_dp_makes_total_unbounded() -> None:
    total = compose([svt(1.0), PrivacySpend(mechanism=Mechanism.PARTIAL, accounting="none")], 1e-5)
    assert total.epsilon is None
    assert total.accounting == "unbounded: a release carried no DP guarantee"


def test_extra_spend_is_projected_without_recording(tmp_path: Path) -> None:
    ledger = PrivacyLedger(tmp_path / "ledger.db")
    ledger.record(1, 1, svt(2.0))
    assert ledger.total(extra=svt(3.0)).epsilon == 5.0
    assert ledger.total().epsilon == 2.0
