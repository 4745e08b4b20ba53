"""``fedseg-admin``: query and steer a running federation over mutual TLS."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from services.admin import commands
from services.admin.client import AdminClient, AdminError
from services.admin.config import AdminSettings, load_settings
from shared.cli import Parser, UsageError
from shared.errors import ConfigurationError, PKIError
from shared.schemas import AggregationName, DeadlinePolicy, Mechanism, MetricsRelease

PROG = "fedseg-admin"
Command = Callable[[AdminClient, argparse.Namespace, AdminSettings], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand: 0 done, 1 the aggregator refused or failed, 2 a usage error."""
    try:
        args = parser().parse_args(argv)
        overrides = {
            k: v for k in ("url", "ca", "cert", "key") if (v := getattr(args, k)) is not None
        }
        if args.request_timeout is not None:
            overrides["timeout_s"] = args.request_timeout
        settings = load_settings(overrides, args.env_file)
        client = AdminClient.connect(settings)
    except (UsageError, ConfigurationError, PKIError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    try:
        run: Command = args.run_command
        return run(client, args, settings)
    except AdminError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except (ConfigurationError, PKIError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `fedseg-admin rounds | head`: the reader has what it wanted. Point stdout at
        # /dev/null so the interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # e.g. export into a folder it may not write
        print(f"{PROG}: error: {exc.strerror or exc}: {exc.filename or ''}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    finally:
        client.close()


def parser() -> argparse.ArgumentParser:
    top = Parser(
        prog=PROG,
        description="Query and steer a fedseg federation over mutual TLS.",
        epilog="Connection options go before COMMAND; each defaults to FEDSEG_ADMIN_<NAME>.",
    )
    group = top.add_argument_group("connection (default: FEDSEG_ADMIN_<NAME>)")
    group.add_argument("--url", help="the aggregator, https://host:port")
    group.add_argument("--ca", type=Path, help="the federation CA certificate")
    group.add_argument("--cert", type=Path, help="your certificate (admin, to steer)")
    group.add_argument("--key", type=Path, help="its private key (mode 0600)")
    group.add_argument(
        "--timeout", dest="request_timeout", type=float, metavar="S", help="per request (30)"
    )
    group.add_argument("--env-file", type=Path, help="read FEDSEG_ADMIN_* from this file")
    subcommands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Command, help_text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = subcommands.add_parser(
            name, help=help_text, description=help_text
        )
        sub.set_defaults(run_command=run)
        return sub

    command("health", commands.health, "is the aggregator up? (exit 0 when it is)")
    command("runs", commands.runs, "list training runs")
    rounds = command(
        "rounds",
        commands.rounds,
        "round table of a run (default: the newest); before = Dice of the round's base model "
        "on the nodes' validation splits, after = of their locally trained models, global = "
        "of the model the round produced; then who the open round is missing, its deadline "
        "and the run's ETA",
    )
    rounds.add_argument("--run", type=int, metavar="ID")
    command("nodes", commands.nodes, "nodes: state (ok/late/offline/failed/revoked), last seen, "
            "rounds joined, privacy spent")  # fmt: skip
    remove = command(
        "remove-node",
        commands.remove_node,
        "take a node out of an active run without revoking it (admin): the open round stops "
        "waiting for it",
    )
    remove.add_argument("run", type=int, metavar="RUN_ID")
    remove.add_argument("node", metavar="NODE")
    export = command(
        "export",
        commands.export,
        "write a run's final global model (model.safetensors), rounds.csv, nodes.csv and "
        "privacy.csv into a new folder",
    )
    export.add_argument("run", type=int, metavar="RUN_ID")
    export.add_argument("--out", type=Path, required=True, metavar="DIR")
    _run_options(command("create-run", commands.create_run, "start a training run (admin)"))
    for action in ("pause", "resume", "abort"):
        steer = command(action, commands.steer, f"{action} a run (admin)")
        steer.add_argument("run", type=int, metavar="RUN_ID")
    revoke = command("revoke", commands.revoke, "refuse a certificate from now on (admin)")
    revoke.add_argument(
        "--cert", dest="target", type=Path, metavar="PATH", help="the certificate to revoke"
    )
    revoke.add_argument("--serial", help="or its serial number (hex), with --name")
    revoke.add_argument("--name", help="the holder's name (CN)")
    revoke.add_argument("--reason", help="why, for the record")
    revoke.add_argument("--pki", type=Path, metavar="CA_DIR", help="also add it to the CA's CRL")
    board = command(
        "dashboard", commands.dashboard, "serve the read-only status page, proxied with your cert"
    )
    board.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    board.add_argument("--port", type=int, default=8765, help="0 picks a free one (default: 8765)")
    board.add_argument(
        "--allow-remote", action="store_true", help="allow a non-loopback --host (not advised)"
    )
    wait = command("wait", commands.wait, "print progress until the run ends (exit 0: completed)")
    wait.add_argument("--run", type=int, metavar="ID", help="default: the newest run")
    wait.add_argument("--interval", type=float, default=2.0, metavar="S", help="poll every S")
    wait.add_argument("--timeout", type=float, metavar="S", help="give up after S seconds")
    return top


def _run_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--spec", help="a whole run as JSON (RunCreate), or @file; flags override")
    sub.add_argument("--name", help="run name (default: run)")
    sub.add_argument("--unless-active", action="store_true", help="skip if --name is running")
    sub.add_argument("--rounds", type=int, help="training rounds")
    sub.add_argument("--nodes", nargs="+", metavar="NAME", help="the nodes expected each round")
    sub.add_argument("--min-nodes", type=int, help="updates a round needs at its deadline")
    sub.add_argument("--timeout", type=float, metavar="S", help="round deadline in seconds")
    policies = [p.value for p in DeadlinePolicy]
    sub.add_argument("--deadline-policy", choices=policies, help="too few updates at deadline")
    sub.add_argument("--max-attempts", type=int, help="re-opens of a round before it fails")
    sub.add_argument("--init-filters", type=int, help="model width (SegResNet init_filters)")
    sub.add_argument("--crop", type=int, nargs="+", metavar="EDGE", help="crop edge, or D H W")
    sub.add_argument("--epochs", type=int, help="local epochs per round")
    sub.add_argument("--steps", type=int, help="at most this many local steps per epoch")
    sub.add_argument("--lr", type=float, help="learning rate (Adam)")
    sub.add_argument("--batch-size", type=int)
    sub.add_argument("--seed", type=int)
    sub.add_argument(
        "--hd95", action="store_true", default=None, help="validation also measures HD95 (mm)"
    )
    privacy = sub.add_argument_group("privacy (or --privacy-json with a PrivacyPolicy)")
    privacy.add_argument("--privacy-json", help="a PrivacyPolicy as JSON, or @file")
    privacy.add_argument("--privacy", choices=[m.value for m in Mechanism], help="mechanism")
    privacy.add_argument("--fraction", type=float, help="partial, svt: share this fraction")
    privacy.add_argument("--clip", type=float, help="partial, svt: clip to +-gamma")
    privacy.add_argument("--epsilon", type=float, help="svt: epsilon per round")
    privacy.add_argument("--threshold", type=float, help="svt: threshold tau")
    privacy.add_argument("--noise-multiplier", type=float, help="gaussian, dpsgd: sigma")
    privacy.add_argument(
        "--l2-clip", type=float, help="gaussian: L2 clip S; dpsgd: per-patient clip C"
    )
    privacy.add_argument("--delta", type=float, help="gaussian, dpsgd: delta")
    privacy.add_argument("--sample-rate", type=float, help="dpsgd: patient sampling rate q")
    privacy.add_argument(
        "--target-epsilon", type=float, help="dpsgd: whole-run epsilon (sigma is derived)"
    )
    privacy.add_argument(
        "--metrics",
        choices=[m.value for m in MetricsRelease],
        help="how reported numbers leave nodes (default: exact without DP, withheld with DP)",
    )
    privacy.add_argument("--metrics-epsilon", type=float, help="metrics laplace: epsilon")
    privacy.add_argument("--exclude", nargs="+", metavar="NAME", help="tensors never sent")
    robust = sub.add_argument_group("aggregation")
    robust.add_argument(
        "--strategy",
        choices=[name.value for name in AggregationName],
        help="how updates are combined (default fedavg; the others resist a bad node)",
    )
    robust.add_argument(
        "--trim-fraction", type=float, help="trimmed-mean: share dropped at each end (beta)"
    )
    robust.add_argument("--max-norm", type=float, help="norm-bounded: L2 bound per update")
    robust.add_argument(
        "--server-lr", type=float, help="fedadam: the server's step size (default 0.01)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
