"""The node's privacy ledger: node-chosen keys, write-ahead records, integrity, reset, import."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from opacus.accountants import RDPAccountant

from services.node.ledger import (
    IMPORTED_FEDERATION,
    IMPORTED_SHA256,
    PrivacyLedger,
    ReleaseKey,
    ReleaseKind,
    federation_id,
)
from shared.errors import LedgerIntegrityError, PKIError
from shared.privacy.accounting import ALPHAS
from shared.schemas import Mechanism, PrivacySpend

FED_A = "a" * 64
FED_B = "b" * 64


def key(number: int, run_id: int = 1, federation: str = FED_A) -> ReleaseKey:
    return ReleaseKey(federation, run_id, number, ReleaseKind.UPDATE)


def svt(eps: float) -> PrivacySpend:
    return PrivacySpend(mechanism=Mechanism.SVT, epsilon=eps, accounting="SVT")


def laplace(eps: float) -> PrivacySpend:
    return PrivacySpend(mechanism=Mechanism.SVT, epsilon=eps, accounting="Laplace metrics")


def gauss(sigma: float) -> PrivacySpend:
    """One Gaussian release, sigma in units of its L2 sensitivity."""
    return PrivacySpend(
        mechanism=Mechanism.GAUSSIAN,
        epsilon=1.0,
        delta=1e-5,
        accounting="RDP",
        parameters={"noise_multiplier": sigma, "sample_rate": 1.0, "steps": 1},
    )


def reset_hint(state_dir: Path) -> str:
    return (
        "; restore it from backup, or start over with "
        f"`fedseg-node ledger reset --state-dir {state_dir} --reason TEXT`"
    )


def ledger_lines(state_dir: Path) -> list[bytes]:
    return (state_dir / "privacy" / "ledger.jsonl").read_bytes().splitlines(keepends=True)


def three_releases(state_dir: Path) -> PrivacyLedger:
    ledger = PrivacyLedger(state_dir)
    for number in (1, 2, 3):
        ledger.record(key(number), [svt(0.5)], f"round {number}".encode())
    return ledger


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def test_record_same_key_five_times_keeps_the_first(tmp_path: Path) -> None:
    ledger = PrivacyLedger(tmp_path)
    first = ledger.record(key(1), [svt(0.5)], b"first noised update")
    for attempt in range(4):
        with pytest.raises(ValueError, match=r"^release ") as caught:
            ledger.record(key(1), [svt(0.5)], f"fresh noise {attempt}".encode())
        assert str(caught.value) == (
            f"release {key(1)} is already on the ledger as entry 1; send its archived bytes "
            "again (find() and payload()) instead of a new release"
        )
    assert ledger.find(key(1)) == first
    assert ledger.payload(first) == b"first noised update"
    assert first.sha256 == hashlib.sha256(b"first noised update").hexdigest()
    assert (first.seq, ledger.total().releases, len(ledger_lines(tmp_path))) == (1, 1, 2)


def test_record_two_federations_with_same_run_and_round_are_separate(tmp_path: Path) -> None:
    ledger = PrivacyLedger(tmp_path)
    a = ledger.record(key(1, federation=FED_A), [svt(0.5)], b"a")
    b = ledger.record(key(1, federation=FED_B), [svt(0.5)], b"b")
    assert (a.seq, b.seq) == (1, 2)
    assert ledger.find(key(1, federation=FED_B)) == b
    assert (ledger.payload(a), ledger.payload(b)) == (b"a", b"b")
    assert ledger.total().epsilon == 1.0


def test_record_update_and_evaluation_of_a_round_are_separate(tmp_path: Path) -> None:
    ledger = PrivacyLedger(tmp_path)
    ledger.record(key(1), [svt(0.5)], b"update")
    evaluation = ReleaseKey(FED_A, 1, 1, ReleaseKind.EVALUATION)
    assert ledger.find(evaluation) is None
    assert ledger.record(evaluation, [laplace(0.1)], b"report").seq == 2


def test_record_without_spends_is_refused(tmp_path: Path) -> None:
    ledger = PrivacyLedger(tmp_path)
    with pytest.raises(ValueError, match=r"^release ") as caught:
        ledger.record(key(1), [], b"x")
    assert str(caught.value) == f"release {key(1)} must state at least one privacy spend"
    assert ledger.entries() == []


def test_record_spend_the_accountant_cannot_read_writes_nothing(tmp_path: Path) -> None:
    ledger = PrivacyLedger(tmp_path)
    bad = PrivacySpend(
        mechanism=Mechanism.GAUSSIAN, epsilon=1.0, accounting="RDP", parameters={"steps": 1}
    )
    with pytest.raises(ValueError, match="must carry numeric noise_multiplier"):
        ledger.record(key(1), [bad], b"x")
    assert len(ledger_lines(tmp_path)) == 1
    assert list((tmp_path / "privacy" / "releases").iterdir()) == []


def test_release_key_rejects_a_federation_that_is_not_a_sha256(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^federation must") as caught:
        ReleaseKey("https://aggregator", 1, 1, ReleaseKind.UPDATE)
    assert str(caught.value) == (
        "federation must be the hex SHA-256 of the CA certificate (federation_id), "
        "got 'https://aggregator'"
    )


def test_federation_id_hashes_the_first_certificate_der(
    pki_dir: Path, other_ca_dir: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes((pki_dir / "ca.pem").read_bytes() + (other_ca_dir / "ca.pem").read_bytes())
    der = x509.load_pem_x509_certificate((pki_dir / "ca.pem").read_bytes()).public_bytes(
        Encoding.DER
    )
    assert federation_id(bundle) == hashlib.sha256(der).hexdigest()
    assert federation_id(other_ca_dir / "ca.pem") != federation_id(pki_dir / "ca.pem")


def test_entries_survive_reopening(tmp_path: Path) -> None:
    ledger = PrivacyLedger(tmp_path)
    ledger.record(key(1), [gauss(0.55), laplace(0.1)], b"one")
    ledger.record(key(2), [svt(0.25)], b"two")
    reopened = PrivacyLedger(tmp_path)
    assert reopened.entries() == ledger.entries()
    assert reopened.ledger_id == ledger.ledger_id
    assert reopened.payload(reopened.entries()[1]) == b"two"


def test_total_composes_and_carries_ledger_id_and_seq(tmp_path: Path) -> None:
    ledger = PrivacyLedger(tmp_path, target_delta=1e-5)
    for number in (1, 2, 3):
        ledger.record(key(number), [gauss(0.55), laplace(0.1)], b"x")
    accountant = RDPAccountant()
    accountant.history = [(0.55, 1.0, 3)]
    expected = accountant.get_epsilon(delta=1e-5, alphas=list(ALPHAS)) + 0.3
    total = ledger.total()
    assert total.epsilon == pytest.approx(expected, rel=1e-12)
    assert (total.delta, total.releases, total.seq) == (1e-5, 6, 3)
    assert total.ledger_id == ledger.ledger_id
    assert len(ledger.ledger_id) == 32


def test_total_projects_extra_spends_without_recording(tmp_path: Path) -> None:
    ledger = PrivacyLedger(tmp_path)
    ledger.record(key(1), [svt(2.0)], b"x")
    projected = ledger.total(extra=[svt(3.0)])
    assert (projected.epsilon, projected.releases, projected.seq) == (5.0, 2, 1)
    assert (ledger.total().epsilon, ledger.total().seq) == (2.0, 1)


def test_total_of_an_empty_ledger_is_zero_at_seq_zero(tmp_path: Path) -> None:
    total = PrivacyLedger(tmp_path).total()
    assert (total.epsilon, total.delta, total.releases, total.seq) == (0.0, 0.0, 0, 0)


def test_open_deleted_ledger_next_to_node_state_raises(tmp_path: Path) -> None:
    three_releases(tmp_path)
    (tmp_path / "models").mkdir()
    for name in ("ledger.jsonl", "ledger.head"):
        (tmp_path / "privacy" / name).unlink()
    with pytest.raises(LedgerIntegrityError) as caught:
        PrivacyLedger(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path / 'privacy' / 'ledger.jsonl'}: the privacy ledger is missing, but the "
        "state folder holds node state (node-state.json, models, privacy/releases), so its budget "
        "history would be lost" + reset_hint(tmp_path)
    )


def test_open_deleted_privacy_folder_with_only_the_marker_raises(tmp_path: Path) -> None:
    three_releases(tmp_path)
    for path in sorted((tmp_path / "privacy").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    (tmp_path / "privacy").rmdir()
    with pytest.raises(LedgerIntegrityError, match="state folder holds node state") as caught:
        PrivacyLedger(tmp_path)
    assert "(node-state.json)" in str(caught.value)
    assert not (tmp_path / "privacy").exists()


def test_open_ledger_file_missing_next_to_its_head_raises(tmp_path: Path) -> None:
    three_releases(tmp_path)
    (tmp_path / "privacy" / "ledger.jsonl").unlink()
    with pytest.raises(LedgerIntegrityError) as caught:
        PrivacyLedger(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path / 'privacy' / 'ledger.jsonl'}: is missing, but ledger.head exists"
        + reset_hint(tmp_path)
    )


def test_open_head_missing_raises(tmp_path: Path) -> None:
    three_releases(tmp_path)
    (tmp_path / "privacy" / "ledger.head").unlink()
    with pytest.raises(LedgerIntegrityError) as caught:
        PrivacyLedger(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path / 'privacy' / 'ledger.head'}: is missing, but ledger.jsonl exists"
        + reset_hint(tmp_path)
    )


def test_open_truncated_ledger_raises(tmp_path: Path) -> None:
    three_releases(tmp_path)
    path = tmp_path / "privacy" / "ledger.jsonl"
    path.write_bytes(b"".join(ledger_lines(tmp_path)[:-1]))
    with pytest.raises(LedgerIntegrityError) as caught:
        PrivacyLedger(tmp_path)
    assert str(caught.value) == (
        f"{path}: holds 2 releases but ledger.head says 3: releases were removed"
        + reset_hint(tmp_path)
    )


def test_open_truncated_to_a_partial_last_line_raises(tmp_path: Path) -> None:
    three_releases(tmp_path)
    path = tmp_path / "privacy" / "ledger.jsonl"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(LedgerIntegrityError) as caught:
        PrivacyLedger(tmp_path)
    assert str(caught.value) == (
        f"{path}: holds 2 releases but ledger.head says 3: releases were removed"
        + reset_hint(tmp_path)
    )


def test_open_edited_epsilon_in_an_earlier_line_raises(tmp_path: Path) -> None:
    three_releases(tmp_path)
    path = tmp_path / "privacy" / "ledger.jsonl"
    lines = ledger_lines(tmp_path)
    assert b'"epsilon":0.5' in lines[1]
    lines[1] = lines[1].replace(b'"epsilon":0.5', b'"epsilon":0.0')
    path.write_bytes(b"".join(lines))
    with pytest.raises(LedgerIntegrityError) as caught:
        PrivacyLedger(tmp_path)
    assert str(caught.value) == (
        f"{path}: line 3 does not follow the line before it: an earlier line was changed"
        + reset_hint(tmp_path)
    )


def test_open_edited_last_line_raises(tmp_path: Path) -> None:
    three_releases(tmp_path)
    path = tmp_path / "privacy" / "ledger.jsonl"
    lines = ledger_lines(tmp_path)
    lines[-1] = lines[-1].replace(b'"epsilon":0.5', b'"epsilon":0.1')
    path.write_bytes(b"".join(lines))
    with pytest.raises(LedgerIntegrityError) as caught:
        PrivacyLedger(tmp_path)
    assert str(caught.value) == (
        f"{path}: does not end with the line its head names: the last line was changed"
        + reset_hint(tmp_path)
    )


def test_open_torn_last_line_is_dropped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = three_releases(tmp_path)
    path = tmp_path / "privacy" / "ledger.jsonl"
    intact = path.read_bytes()
    torn = b'{"federation":"' + b"a" * 30  # a crash mid-append: no newline, head unchanged
    path.write_bytes(intact + torn)
    (tmp_path / "privacy" / "releases" / "4.bin").write_bytes(b"never sent")
    with caplog.at_level(logging.WARNING, logger="fedseg.node.ledger"):
        reopened = PrivacyLedger(tmp_path)
    assert reopened.entries() == ledger.entries()
    assert path.read_bytes() == intact
    assert not (tmp_path / "privacy" / "releases" / "4.bin").exists()
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: dropped a torn last line ({len(torn)} bytes) left by a crash while "
        "recording; its release was never sent"
    ]
    assert reopened.record(key(4), [svt(0.5)], b"four").seq == 4
    assert PrivacyLedger(tmp_path).total().seq == 4


def test_open_complete_line_the_head_does_not_count_is_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    three_releases(tmp_path)
    head = tmp_path / "privacy" / "ledger.head"
    after_three = head.read_bytes()
    PrivacyLedger(tmp_path).record(key(4), [svt(0.5)], b"four")
    head.write_bytes(after_three)  # a crash between the append and the head's replacement
    with caplog.at_level(logging.WARNING, logger="fedseg.node.ledger"):
        reopened = PrivacyLedger(tmp_path)
    assert (reopened.total().seq, reopened.total().epsilon) == (4, 2.0)
    assert json.loads(head.read_bytes())["seq"] == 4
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'privacy' / 'ledger.jsonl'}: entry 4 was recorded but a crash kept it "
        "from the head; counting it"
    ]


def test_open_head_far_behind_the_ledger_raises(tmp_path: Path) -> None:
    ledger = PrivacyLedger(tmp_path)
    head = tmp_path / "privacy" / "ledger.head"
    empty = head.read_bytes()
    ledger.record(key(1), [svt(0.5)], b"1")
    ledger.record(key(2), [svt(0.5)], b"2")
    head.write_bytes(empty)
    with pytest.raises(LedgerIntegrityError) as caught:
        PrivacyLedger(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path / 'privacy' / 'ledger.jsonl'}: holds 2 releases but ledger.head says "
        "only 0" + reset_hint(tmp_path)
    )


def test_open_marker_naming_another_ledger_raises(tmp_path: Path) -> None:
    ledger = three_releases(tmp_path)
    marker = tmp_path / "node-state.json"
    marker.write_text(json.dumps({"ledger_id": "f" * 32, "created_at": "2024-01-01T00:00:00"}))
    with pytest.raises(LedgerIntegrityError) as caught:
        PrivacyLedger(tmp_path)
    assert str(caught.value) == (
        f"{marker}: the node-state marker names ledger {'f' * 32}, but "
        f"{tmp_path / 'privacy' / 'ledger.jsonl'} is ledger {ledger.ledger_id}: the privacy "
        "folder was replaced" + reset_hint(tmp_path)
    )


def test_open_ledger_of_another_folder_is_refused(tmp_path: Path) -> None:
    three_releases(tmp_path / "mine")
    PrivacyLedger(tmp_path / "fresh")
    (tmp_path / "mine" / "privacy").rename(tmp_path / "moved")
    (tmp_path / "fresh" / "privacy").rename(tmp_path / "mine" / "privacy")
    with pytest.raises(LedgerIntegrityError, match="the privacy folder was replaced"):
        PrivacyLedger(tmp_path / "mine")


def test_open_missing_marker_is_written_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = three_releases(tmp_path)
    marker = tmp_path / "node-state.json"
    marker.unlink()
    with caplog.at_level(logging.WARNING, logger="fedseg.node.ledger"):
        assert PrivacyLedger(tmp_path).total().seq == 3
    assert json.loads(marker.read_bytes())["ledger_id"] == ledger.ledger_id
    assert [r.getMessage() for r in caplog.records] == [
        f"{marker} was missing; written again for ledger {ledger.ledger_id}"
    ]


def test_open_empty_state_folder_with_only_a_lock_creates_a_ledger(tmp_path: Path) -> None:
    (tmp_path / ".lock").touch()
    (tmp_path / "cases").mkdir()
    ledger = PrivacyLedger(tmp_path)
    assert ledger.entries() == []
    header = json.loads(ledger_lines(tmp_path)[0])
    assert header == {
        "type": "header",
        "prev": "0" * 64,
        "format": 1,
        "ledger_id": ledger.ledger_id,
        "created_at": header["created_at"],
    }
    assert json.loads((tmp_path / "node-state.json").read_bytes()) == {
        "ledger_id": ledger.ledger_id,
        "created_at": header["created_at"],
    }


def test_payload_that_no_longer_matches_is_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = PrivacyLedger(tmp_path)
    entry = ledger.record(key(1), [svt(0.5)], b"original")
    archived = tmp_path / "privacy" / "releases" / "1.bin"
    archived.write_bytes(b"tampered")
    with caplog.at_level(logging.WARNING, logger="fedseg.node.ledger"):
        assert ledger.payload(entry) is None
    assert [r.getMessage() for r in caplog.records] == [
        f"{archived} does not match ledger entry 1 (sha256); not using it"
    ]


def test_retention_deletes_older_payloads_of_the_same_run_and_kind(tmp_path: Path) -> None:
    ledger = PrivacyLedger(tmp_path)
    one = ledger.record(key(1), [svt(0.5)], b"run 1 round 1")
    other_run = ledger.record(key(1, run_id=2), [svt(0.5)], b"run 2 round 1")
    other_fed = ledger.record(key(1, federation=FED_B), [svt(0.5)], b"fed b round 1")
    evaluation = ledger.record(
        ReleaseKey(FED_A, 1, 1, ReleaseKind.EVALUATION), [laplace(0.1)], b"eval 1"
    )
    assert ledger.payload(one) == b"run 1 round 1"
    two = ledger.record(key(2), [svt(0.5)], b"run 1 round 2")
    assert ledger.payload(one) is None
    assert not (tmp_path / "privacy" / "releases" / "1.bin").exists()
    assert ledger.find(key(1)) == one
    assert [ledger.payload(e) for e in (two, other_run, other_fed, evaluation)] == [
        b"run 1 round 2",
        b"run 2 round 1",
        b"fed b round 1",
        b"eval 1",
    ]
    assert ledger.total().epsilon == 2.1


def test_reset_starts_a_new_ledger_and_keeps_the_old(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = three_releases(tmp_path)
    old_head = json.loads((tmp_path / "privacy" / "ledger.head").read_bytes())
    with caplog.at_level(logging.WARNING, logger="fedseg.node.ledger"):
        archive = PrivacyLedger.reset(tmp_path, "  new data-sharing agreement  ")
    assert archive.parent == tmp_path
    assert archive.name.startswith("privacy-archive-")
    assert json.loads((archive / "ledger.head").read_bytes()) == old_head
    assert (archive / "releases" / "3.bin").read_bytes() == b"round 3"
    new = PrivacyLedger(tmp_path)
    assert new.ledger_id != old.ledger_id
    assert (new.entries(), new.total().epsilon, new.total().seq) == ([], 0.0, 0)
    assert new.header["previous"] == {
        "ledger_id": old.ledger_id,
        "seq": 3,
        "head_hash": old_head["hash"],
        "archive": archive.name,
    }
    assert new.header["reason"] == "new data-sharing agreement"
    assert new.record(key(1), [svt(0.5)], b"again").seq == 1
    assert [r.getMessage() for r in caplog.records] == [
        "the privacy budget history was reset by the operator (reason: new data-sharing "
        f"agreement): new ledger {new.ledger_id} starts empty; the old ledger "
        f"{old.ledger_id} (seq 3) is kept in {archive}"
    ]
    assert caplog.records[0].levelno == logging.WARNING


def test_reset_of_a_ledger_without_head_records_missing(tmp_path: Path) -> None:
    old = three_releases(tmp_path)
    (tmp_path / "privacy" / "ledger.head").unlink()
    archive = PrivacyLedger.reset(tmp_path, "head lost")
    assert PrivacyLedger(tmp_path).header["previous"] == {
        "ledger_id": old.ledger_id,
        "seq": "missing",
        "head_hash": "missing",
        "archive": archive.name,
    }


def test_reset_twice_in_a_second_keeps_both_archives(tmp_path: Path) -> None:
    three_releases(tmp_path)
    first = PrivacyLedger.reset(tmp_path, "one")
    second = PrivacyLedger.reset(tmp_path, "two")
    assert first != second
    assert (first / "ledger.jsonl").is_file()
    assert (second / "ledger.jsonl").is_file()


def test_reset_needs_a_reason(tmp_path: Path) -> None:
    three_releases(tmp_path)
    with pytest.raises(ValueError, match=r"^a ledger reset") as caught:
        PrivacyLedger.reset(tmp_path, "   ")
    assert str(caught.value) == (
        "a ledger reset needs a reason; it is kept in the new ledger's header"
    )
    assert PrivacyLedger(tmp_path).total().seq == 3


def _old_sqlite_ledger(path: Path) -> None:
    """A privacy-ledger.db as the SQLite ledger (fedseg before the JSON ledger) wrote it."""
    rows = [
        (1, 1, "gaussian", 1.2, 1e-5, "RDP", {"noise_multiplier": 1.1, "rounds": 1,
                                              "sensitivity_factor": 2.0}),
        (1, 2, "svt", 0.5, 0.0, "SVT", {}),
        (2, 1, "gaussian", 1.2, 1e-5, "RDP", {"noise_multiplier": 1.1}),
    ]  # fmt: skip
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute(
            "CREATE TABLE releases (run_id INTEGER NOT NULL, round INTEGER NOT NULL, "
            "mechanism TEXT NOT NULL, epsilon REAL, delta REAL NOT NULL, accounting TEXT NOT "
            "NULL, parameters TEXT NOT NULL, recorded_at TEXT NOT NULL, "
            "PRIMARY KEY (run_id, round))"
        )
        for number, (run_id, rnd, mech, eps, delta, acc, params) in enumerate(rows):
            db.execute(
                "INSERT INTO releases VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, rnd, mech, eps, delta, acc, json.dumps(params),
                 f"2024-05-0{number + 1}T10:00:00+00:00"),
            )  # fmt: skip


def test_open_imports_the_old_sqlite_ledger(tmp_path: Path) -> None:
    _old_sqlite_ledger(tmp_path / "privacy-ledger.db")
    (tmp_path / "models").mkdir()  # an old node's state folder
    ledger = PrivacyLedger(tmp_path, target_delta=1e-5)
    assert not (tmp_path / "privacy-ledger.db").exists()
    assert (tmp_path / "privacy-ledger.db.imported").is_file()
    assert [(e.seq, e.key, e.sha256) for e in ledger.entries()] == [
        (1, ReleaseKey(IMPORTED_FEDERATION, 1, 1, ReleaseKind.UPDATE), IMPORTED_SHA256),
        (2, ReleaseKey(IMPORTED_FEDERATION, 1, 2, ReleaseKind.UPDATE), IMPORTED_SHA256),
        (3, ReleaseKey(IMPORTED_FEDERATION, 2, 1, ReleaseKind.UPDATE), IMPORTED_SHA256),
    ]
    svt_spend = ledger.entries()[1].spends[0]
    assert (svt_spend.mechanism, svt_spend.epsilon, svt_spend.accounting) == (
        Mechanism.SVT,
        0.5,
        "SVT (imported from privacy-ledger.db)",
    )
    assert ledger.entries()[0].spends[0].parameters == {
        "sigma": 1.1,
        "noise_multiplier": 0.55,
        "sample_rate": 1.0,
        "steps": 1,
        "sensitivity_factor": 2.0,
    }
    # The old ledger's composition: two Gaussian releases at sigma / 2, plus SVT's 0.5.
    accountant = RDPAccountant()
    accountant.history = [(1.1 / 2, 1.0, 2)]
    expected = accountant.get_epsilon(delta=1e-5, alphas=list(ALPHAS)) + 0.5
    total = ledger.total()
    assert total.epsilon == pytest.approx(expected, rel=1e-12)
    assert (total.releases, total.seq) == (3, 3)
    assert ledger.payload(ledger.entries()[0]) is None
    assert ledger.header["imported_from"] == "privacy-ledger.db"
    assert PrivacyLedger(tmp_path).entries() == ledger.entries()


def test_open_unreadable_old_sqlite_ledger_raises(tmp_path: Path) -> None:
    (tmp_path / "privacy-ledger.db").write_bytes(b"not a database, just bytes " * 10)
    with pytest.raises(LedgerIntegrityError, match="the old privacy ledger cannot be imported"):
        PrivacyLedger(tmp_path)
    assert (tmp_path / "privacy-ledger.db").is_file()
    assert not (tmp_path / "privacy").exists()


def test_files_and_folders_are_private_under_a_permissive_umask(tmp_path: Path) -> None:
    with umask(0):
        ledger = PrivacyLedger(tmp_path / "state")
        ledger.record(key(1), [svt(0.5)], b"x")
        PrivacyLedger.reset(tmp_path / "state", "mode check")
        PrivacyLedger(tmp_path / "state").record(key(1), [svt(0.5)], b"y")
    state = tmp_path / "state"
    folders = [state / "privacy", state / "privacy" / "releases"]
    files = [
        state / "node-state.json",
        state / "privacy" / "ledger.jsonl",
        state / "privacy" / "ledger.head",
        state / "privacy" / "releases" / "1.bin",
    ]
    assert [stat.S_IMODE(p.stat().st_mode) for p in folders] == [0o700, 0o700]
    assert [stat.S_IMODE(p.stat().st_mode) for p in files] == [0o600] * 4


def test_ledger_lines_are_json_without_pickle(tmp_path: Path) -> None:
    ledger = PrivacyLedger(tmp_path)
    entry = ledger.record(key(7, run_id=3), [svt(0.5)], b"x")
    header, line = ledger_lines(tmp_path)
    record = json.loads(line)
    assert record == {
        "type": "release",
        "prev": hashlib.sha256(header.rstrip(b"\n")).hexdigest(),
        "seq": 1,
        "federation": FED_A,
        "run_id": 3,
        "round": 7,
        "kind": "update",
        "spends": [svt(0.5).model_dump(mode="json")],
        "sha256": entry.sha256,
        "recorded_at": entry.recorded_at.isoformat(),
    }
    assert json.loads((tmp_path / "privacy" / "ledger.head").read_bytes()) == {
        "ledger_id": ledger.ledger_id,
        "seq": 1,
        "hash": hashlib.sha256(line.rstrip(b"\n")).hexdigest(),
    }


def test_federation_id_of_a_file_without_a_certificate_raises(tmp_path: Path) -> None:
    path = tmp_path / "ca.pem"
    path.write_text("not a certificate\n")
    with pytest.raises(PKIError) as caught:
        federation_id(path)
    assert str(caught.value) == f"{path} is not a PEM certificate"


def test_record_by_a_stale_instance_is_refused(tmp_path: Path) -> None:
    stale = PrivacyLedger(tmp_path)
    PrivacyLedger(tmp_path).record(key(1), [svt(0.5)], b"by the other instance")
    with pytest.raises(LedgerIntegrityError) as caught:
        stale.record(key(2), [svt(0.5)], b"x")
    assert str(caught.value) == (
        f"{tmp_path / 'privacy' / 'ledger.head'} no longer says what this process read: another "
        "PrivacyLedger wrote to the same state folder, or the file was changed; nothing was "
        "recorded"
    )
    assert [e.key for e in PrivacyLedger(tmp_path).entries()] == [key(1)]


def test_a_federation_is_told_only_its_own_releases_and_the_run_total_is_per_run(
    tmp_path: Path,
) -> None:
    ledger = PrivacyLedger(tmp_path)
    ledger.record(key(1), [svt(2.0)], b"a1")
    ledger.record(key(1, federation=FED_B), [svt(30.0)], b"b1")
    ledger.record(key(2), [svt(3.0)], b"a2")
    ledger.record(key(1, run_id=2), [svt(7.0)], b"a-run2")
    told_a = ledger.federation_total(FED_A)
    assert (told_a.epsilon, told_a.seq, told_a.ledger_id) == (12.0, 3, ledger.ledger_id)
    told_b = ledger.federation_total(FED_B, extra=[svt(1.0)])
    assert (told_b.epsilon, told_b.seq) == (31.0, 1)
    assert ledger.run_total(FED_A, 1).epsilon == 5.0
    assert ledger.run_total(FED_B, 1, extra=[svt(1.0)]).epsilon == 31.0
    assert ledger.total().epsilon == 42.0  # the budget still sees everything
