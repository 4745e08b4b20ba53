"""What each ``fedseg-admin`` subcommand does, given its parsed arguments and a client."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime

from services.admin.client import AdminClient, AdminError
from services.admin.config import AdminSettings
from services.admin.export import export_run
from services.admin.runspec import run_request
from services.admin.tables import (
    ROUND_LEGEND,
    current_round_line,
    nodes_table,
    progress_line,
    runs_table,
)
from services.dashboard import proxy
from services.demo.table import final_dice, final_hd95, format_hd95, privacy_table, round_table
from shared import pki
from shared.errors import ConfigurationError
from shared.identity import common_name
from shared.schemas import RoundView, RunState, RunView

ACTIVE = (RunState.RUNNING, RunState.PAUSED)


def health(client: AdminClient, args: argparse.Namespace, settings: AdminSettings) -> int:
    answer = client.health()
    print(f"{answer.status}: fedseg {answer.version} at {settings.url}")
    return 0 if answer.status == "ok" else 1


def runs(client: AdminClient, args: argparse.Namespace, settings: AdminSettings) -> int:
    print(runs_table(client.runs()))
    return 0


def rounds(client: AdminClient, args: argparse.Namespace, settings: AdminSettings) -> int:
    found = client.rounds(args.run)
    if not found:
        print("no rounds yet")
        return 0
    print(ROUND_LEGEND, end="\n\n")
    print(report(found))
    line = current_round_line(client.run(found[0].run_id), found, datetime.now(UTC))
    if line is not None:
        print(f"\n{line}")
    return 0


def export(client: AdminClient, args: argparse.Namespace, settings: AdminSettings) -> int:
    run = client.run(args.run)
    rounds = client.rounds(run.id)
    written = export_run(args.out, run, rounds, client.nodes(), client.model(run.global_model))
    print(f"run {run.id} ({run.name}, {run.state}): wrote {', '.join(str(p) for p in written)}")
    return 0


def remove_node(client: AdminClient, args: argparse.Namespace, settings: AdminSettings) -> int:
    run = client.remove_node(args.run, args.node)
    print(
        f"node {args.node} removed from run {run.id}: it gets no more tasks and the open "
        f"round waits only for {', '.join(run.expected_nodes)}"
    )
    return 0


def nodes(client: AdminClient, args: argparse.Namespace, settings: AdminSettings) -> int:
    print(nodes_table(client.nodes()))
    return 0


def create_run(client: AdminClient, args: argparse.Namespace, settings: AdminSettings) -> int:
    request = run_request(args)
    if args.unless_active:
        for run in client.runs():
            if run.name == request.name and run.state in ACTIVE:
                print(f"run {run.id} ({run.name}) is already {run.state}; not creating another")
                return 0
    run = client.create_run(request)
    print(
        f"run {run.id} ({run.name}) created: {_rounds(run)} over "
        f"{', '.join(run.expected_nodes)} (min {run.min_nodes}), privacy {run.privacy.mechanism}"
    )
    return 0


def steer(client: AdminClient, args: argparse.Namespace, settings: AdminSettings) -> int:
    run = client.steer(args.run, args.command)
    print(f"run {run.id} ({run.name}) is now {run.state}")
    return 0


def revoke(client: AdminClient, args: argparse.Namespace, settings: AdminSettings) -> int:
    if (args.target is None) == (args.serial is None):
        raise ConfigurationError("give exactly one of --cert and --serial")
    if args.target is not None:
        cert = pki.load_certificate(args.target)
        pki.check_issued_by(cert, args.target, pki.load_certificate(settings.ca))
        # Not identity_from_certificate: a certificate the CA signed with a name or role
        # fedseg refuses must still be revocable by its serial.
        holder = common_name(cert)
        if args.name is not None and args.name != holder:
            raise ConfigurationError(f"{args.target} belongs to {holder}, not {args.name}")
        serial, name = cert.serial_number, holder
    else:
        if args.name is None:
            raise ConfigurationError("--serial needs --name, the holder's name (CN)")
        try:
            serial, name = int(args.serial, 16), args.name
        except ValueError:
            raise ConfigurationError(f"--serial must be hexadecimal, got {args.serial!r}") from None
    client.revoke(serial, name, args.reason)
    print(f"revoked {name} (serial {serial:x}): refused from its next request on")
    if args.pki is not None:
        crl = pki.revoke(args.pki, serial)
        print(f"CRL: {crl.path} (number {crl.number}, {len(crl.serials)} revoked)")
    return 0


def wait(client: AdminClient, args: argparse.Namespace, settings: AdminSettings) -> int:
    """Print each round change until the run ends; 0 when it completed."""
    start = time.monotonic()
    seen: dict[tuple[int, int], tuple[str, int, int, int]] = {}
    announced: int | None = None
    last_problem = ""
    while True:
        elapsed = time.monotonic() - start
        try:
            run = client.run(args.run) if args.run is not None else _newest(client.runs())
            found = client.rounds(run.id) if run is not None else []
            last_problem = ""
        except AdminError as exc:
            if not exc.transient:
                raise
            if str(exc) != last_problem:
                print(f"[{elapsed:6.1f}s] waiting for the aggregator: {exc}", flush=True)
            last_problem, run, found = str(exc), None, []
        if run is not None:
            if run.id != announced:
                announced = run.id
                print(
                    f"[{elapsed:6.1f}s] run {run.id} ({run.name}): {_rounds(run)} over "
                    f"{', '.join(run.expected_nodes)}",
                    flush=True,
                )
            for r in found:
                key = (str(r.state), len(r.reported_nodes), len(r.declined_nodes), r.attempt)
                if seen.get((run.id, r.round)) != key:
                    seen[(run.id, r.round)] = key
                    print(progress_line(elapsed, run, r), flush=True)
            if run.state not in ACTIVE:
                print(f"\n{report(found)}\nrun {run.id}: {run.state}{_detail(run)}", flush=True)
                return 0 if run.state == RunState.COMPLETED else 1
        if args.timeout is not None and elapsed > args.timeout:
            state = "no run was created" if run is None else f"run {run.id} is still {run.state}"
            print(f"fedseg-admin: error: {state} after {args.timeout:g} s", file=sys.stderr)
            return 1
        time.sleep(args.interval)


def dashboard(client: AdminClient, args: argparse.Namespace, settings: AdminSettings) -> int:
    """Serve the read-only dashboard on loopback until Ctrl-C (services/dashboard/proxy.py)."""
    via = f"{settings.url} as {settings.cert.name}"
    return proxy.serve(client.http, args.host, args.port, args.allow_remote, via)


def report(found: list[RoundView]) -> str:
    """The round table, the final model's Dice (and HD95) and the privacy spent."""
    parts = [round_table(found)]
    dice = final_dice(found)
    if dice is not None:
        parts.append(
            f"final global model: TC {dice.tc:.3f}  WT {dice.wt:.3f}  ET {dice.et:.3f}  "
            f"mean {dice.mean:.3f}"
        )
    hd95 = final_hd95(found)
    if hd95 is not None:
        parts.append(f"final global model HD95: {format_hd95(hd95)}")
    parts.append(privacy_table(found))
    return "\n\n".join(parts)


def _newest(found: list[RunView]) -> RunView | None:
    return max(found, key=lambda r: r.id, default=None)


def _rounds(run: RunView) -> str:
    return f"{run.rounds} round{'' if run.rounds == 1 else 's'}"


def _detail(run: RunView) -> str:
    return f" ({run.detail})" if run.detail else ""
