"""The aggregator's memory of each node's ledger: the highest epsilon and any regression."""

from __future__ import annotations

from services.aggregator.state.views import fold_totals
from shared.schemas import PrivacyTotal


def _total(epsilon: float | None, ledger: str | None = "a" * 32, seq: int = 1) -> PrivacyTotal:
    return PrivacyTotal(epsilon=epsilon, delta=0.0, releases=seq, accounting="x",
                        ledger_id=ledger, seq=seq)  # fmt: skip


def test_fold_totals_keeps_the_highest_epsilon_of_a_growing_ledger() -> None:
    history = fold_totals([_total(1.0), _total(3.0, seq=2), _total(3.0, seq=3)])
    assert (history.latest.seq, history.highest, history.regression) == (3, 3.0, None)


def test_fold_totals_flags_a_lower_epsilon_and_keeps_the_flag() -> None:
    history = fold_totals([_total(5.0), _total(2.0, seq=2), _total(9.0, seq=3)])
    assert history.highest == 9.0
    assert history.regression == "ledger regression: cumulative epsilon 2 reported after 5"


def test_fold_totals_flags_a_replaced_ledger() -> None:
    history = fold_totals([_total(5.0), _total(6.0, ledger="b" * 32)])
    assert history.regression == (
        f"ledger regression: the node reported ledger {'b' * 32} after ledger {'a' * 32} "
        "(its privacy ledger was replaced)"
    )


def test_fold_totals_an_unbounded_total_has_no_highest_figure() -> None:
    history = fold_totals([_total(5.0), _total(None, seq=2)])
    assert (history.highest, history.regression) == (None, None)
