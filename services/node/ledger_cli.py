"""`fedseg-node ledger show|reset`: read the node's privacy ledger, or start it over."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from services.node.ledger import LEGACY_DB, MARKER_FILE, PRIVACY_DIR, PrivacyLedger, reset_ledger
from services.node.state_lock import StateLock
from shared.errors import ConfigurationError, FedsegError


class _UsageError(Exception):
    """argparse's complaint, printed as one line instead of usage and an exit."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fedseg-node ledger", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{show,reset}")
    show = commands.add_parser("show", help="one line per release, then the total")
    show.add_argument("--state-dir", type=Path, required=True)
    reset = commands.add_parser(
        "reset", help="archive the ledger and start an empty one (the budget history restarts)"
    )
    reset.add_argument("--state-dir", type=Path, required=True)
    reset.add_argument("--reason", required=True, help="kept in the new ledger's header")
    return parser


def _epsilon(value: float | None) -> str:
    return "unbounded" if value is None else f"{value:.4g}"


def show(ledger: PrivacyLedger) -> None:
    """Print the ledger's header line, one line per entry, and the total."""
    header = ledger.header
    print(f"ledger {ledger.ledger_id}, created {header['created_at']}")
    previous = header.get("previous")
    if isinstance(previous, dict):
        print(
            f"reset from ledger {previous.get('ledger_id')} (seq {previous.get('seq')}, kept in "
            f"{previous.get('archive')}): {header.get('reason')}"
        )
    for entry in ledger.entries():
        mechanisms = "+".join(s.mechanism.value for s in entry.spends)
        epsilons = "+".join(_epsilon(s.epsilon) for s in entry.spends)
        print(
            f"{entry.seq:>5}  {entry.key}  {mechanisms}  epsilon {epsilons}  "
            f"sha256 {entry.sha256[:12]}  {entry.recorded_at.isoformat(timespec='seconds')}"
        )
    total = ledger.total()
    print(
        f"total: epsilon {_epsilon(total.epsilon)}, delta {total.delta:g}, "
        f"{total.releases} spends in {total.seq} releases ({total.accounting})"
    )


def main(argv: Sequence[str]) -> int:
    """Run ``fedseg-node ledger`` with ``argv`` (what follows ``ledger``); 2 on failure."""
    try:
        args = _parser().parse_args(list(argv))
    except _UsageError as exc:
        return _fail(str(exc))
    state_dir: Path = args.state_dir
    if not state_dir.is_dir():
        return _fail(f"the state folder {state_dir} does not exist")
    if args.command == "show" and not any(
        (state_dir / name).exists() for name in (PRIVACY_DIR, MARKER_FILE, LEGACY_DB)
    ):
        return _fail(f"the state folder {state_dir} holds no privacy ledger")
    try:
        lock = StateLock(state_dir)
    except ConfigurationError:
        return _fail(f"a node is running with the state folder {state_dir}; stop it first")
    try:
        if args.command == "reset":
            archive = reset_ledger(state_dir, args.reason)
            print(f"new ledger {PrivacyLedger(state_dir).ledger_id}; the old one is in {archive}")
        else:
            # Opening is what the node does on start: it may import an old SQLite ledger or
            # drop a torn last line, so it happens under the state folder's lock.
            show(PrivacyLedger(state_dir))
    except (FedsegError, ValueError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot use the state folder {state_dir}: {exc}")
    finally:
        lock.release()
    return 0


def _fail(message: str) -> int:
    print(f"fedseg-node: {message}", file=sys.stderr)
    return 2
