"""`fedseg-node ledger show|reset`: output, the reset, and one-line failures."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from services.node.ledger import PrivacyLedger, ReleaseKey, ReleaseKind
from services.node.ledger_cli import main
from services.node.state_lock import StateLock
from shared.schemas import Mechanism, PrivacySpend

FED = "c" * 64


def spend(mechanism: Mechanism, eps: float | None) -> PrivacySpend:
    return PrivacySpend(mechanism=mechanism, epsilon=eps, accounting="test")


def recorded(state_dir: Path) -> PrivacyLedger:
    ledger = PrivacyLedger(state_dir)
    ledger.record(
        ReleaseKey(FED, 1, 1, ReleaseKind.UPDATE),
        [spend(Mechanism.SVT, 0.5), spend(Mechanism.SVT, 0.125)],
        b"update 1",
    )
    ledger.record(
        ReleaseKey(FED, 1, 1, ReleaseKind.EVALUATION), [spend(Mechanism.SVT, 0.25)], b"report"
    )
    return ledger


def test_show_prints_one_line_per_entry_then_the_total(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = recorded(tmp_path)
    first, second = ledger.entries()
    assert main(["show", "--state-dir", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines() == [
        f"ledger {ledger.ledger_id}, created {ledger.header['created_at']}",
        f"    1  cccccccccccc run 1 round 1 update  svt+svt  epsilon 0.5+0.125  "
        f"sha256 {first.sha256[:12]}  {first.recorded_at.isoformat(timespec='seconds')}",
        f"    2  cccccccccccc run 1 round 1 evaluation  svt  epsilon 0.25  "
        f"sha256 {second.sha256[:12]}  {second.recorded_at.isoformat(timespec='seconds')}",
        "total: epsilon 0.875, delta 0, 3 spends in 2 releases (basic composition)",
    ]


def test_show_reports_an_unbounded_total_and_a_reset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = recorded(tmp_path)
    archive = PrivacyLedger.reset(tmp_path, "audit")
    ledger = PrivacyLedger(tmp_path)
    ledger.record(ReleaseKey(FED, 2, 1, ReleaseKind.UPDATE), [spend(Mechanism.PARTIAL, None)], b"x")
    assert main(["show", "--state-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == f"reset from ledger {old.ledger_id} (seq 2, kept in {archive.name}): audit"
    assert lines[2].startswith(
        "    1  cccccccccccc run 2 round 1 update  partial  epsilon unbounded"
    )
    assert lines[3] == (
        "total: epsilon unbounded, delta 0, 1 spends in 1 releases "
        "(unbounded: a release carried no DP guarantee)"
    )


def test_reset_archives_the_ledger_and_logs_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    old = recorded(tmp_path)
    with caplog.at_level(logging.WARNING, logger="fedseg.node.ledger"):
        code = main(["reset", "--state-dir", str(tmp_path), "--reason", "new agreement"])
    assert code == 0
    new = PrivacyLedger(tmp_path)
    archive = Path(str(new.header["previous"]["archive"]))  # type: ignore[index]
    assert capsys.readouterr().out == (
        f"new ledger {new.ledger_id}; the old one is in {tmp_path / archive}\n"
    )
    assert (tmp_path / archive / "ledger.jsonl").is_file()
    assert new.total().seq == 0
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert f"the old ledger {old.ledger_id} (seq 2)" in caplog.records[0].getMessage()


def test_reset_without_a_reason_fails_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recorded(tmp_path)
    assert main(["reset", "--state-dir", str(tmp_path)]) == 2
    assert capsys.readouterr() == (
        "",
        "fedseg-node: the following arguments are required: --reason\n",
    )


def test_reset_with_a_blank_reason_fails_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recorded(tmp_path)
    assert main(["reset", "--state-dir", str(tmp_path), "--reason", " "]) == 2
    assert capsys.readouterr().err == (
        "fedseg-node: a ledger reset needs a reason; it is kept in the new ledger's header\n"
    )
    assert PrivacyLedger(tmp_path).total().seq == 2


def test_show_of_a_broken_ledger_fails_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recorded(tmp_path)
    (tmp_path / "privacy" / "ledger.head").unlink()
    assert main(["show", "--state-dir", str(tmp_path)]) == 2
    assert capsys.readouterr() == (
        "",
        f"fedseg-node: {tmp_path / 'privacy' / 'ledger.head'}: is missing, but ledger.jsonl "
        f"exists; restore it from backup, or start over with `fedseg-node ledger reset "
        f"--state-dir {tmp_path} --reason TEXT`\n",
    )


def test_show_of_a_folder_without_a_ledger_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["show", "--state-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"fedseg-node: the state folder {tmp_path} holds no privacy ledger\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_show_of_a_missing_folder_fails_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["show", "--state-dir", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err == (
        f"fedseg-node: the state folder {tmp_path / 'nowhere'} does not exist\n"
    )


def test_commands_refuse_a_state_folder_a_node_is_using(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recorded(tmp_path)
    lock = StateLock(tmp_path)
    try:
        assert main(["reset", "--state-dir", str(tmp_path), "--reason", "x"]) == 2
    finally:
        lock.release()
    assert capsys.readouterr().err == (
        f"fedseg-node: a node is running with the state folder {tmp_path}; stop it first\n"
    )
    assert PrivacyLedger(tmp_path).total().seq == 2


def test_unknown_command_fails_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["erase"]) == 2
    err = capsys.readouterr().err
    # How argparse quotes the choices differs between Python versions.
    assert err.startswith("fedseg-node: argument {show,reset}: invalid choice: 'erase' (choose")
    assert err.count("\n") == 1
