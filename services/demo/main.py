"""`fedseg-demo` (`make demo`): a whole federation as local processes over mutual TLS."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from services.demo.holdout import HOLDOUT_FOLDER, score_model, write_holdout
from services.demo.processes import (
    Kit,
    aggregator_env,
    free_port,
    node_env,
    port_is_free,
    spawn,
    stop,
    wait_healthy,
)
from services.demo.table import final_dice, final_hd95, format_hd95, privacy_table, round_table
from services.node.data.synthetic_sites import uneven_site_sizes, write_site
from shared.model import ModelConfig
from shared.pki import bootstrap
from shared.privacy.mechanisms import mechanism_for, reported_numbers
from shared.schemas import (
    API_PREFIX,
    Mechanism,
    PrivacyPolicy,
    RoundView,
    RunCreate,
    RunView,
    TrainingPlan,
)

DEFAULT_SVT_EPSILON = 3e5
"""Per-round epsilon of the demo's SVT; docs/privacy.md explains why SVT over ~10^5
shared components needs an epsilon this large to learn at all (section 9: measured cost)."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="fedseg-demo", description=__doc__)
    p.add_argument("--workdir", type=Path, default=Path("var/demo"))
    p.add_argument("--nodes", type=int, default=3, help="hospitals (default 3)")
    p.add_argument("--rounds", type=int, default=4, help="training rounds (default 4)")
    p.add_argument("--cases", type=int, default=18, help="synthetic cases over all sites")
    p.add_argument("--volume", type=int, default=48, help="edge of each synthetic volume")
    p.add_argument("--crop", type=int, default=32, help="edge of the training crop")
    p.add_argument("--steps", type=int, default=12, help="local steps per round")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--init-filters", type=int, default=8, help="SegResNet width (paper: 16)")
    p.add_argument(
        "--privacy",
        choices=[m.value for m in Mechanism],
        default=Mechanism.SVT.value,
        help="mechanism applied to every update (default svt)",
    )
    p.add_argument("--fraction", type=float, default=0.3, help="partial/svt: share this fraction")
    p.add_argument("--clip", type=float, default=1e-2, help="partial/svt: clip to +-gamma")
    p.add_argument("--epsilon", type=float, default=None, help="svt: epsilon per round")
    p.add_argument("--noise-multiplier", type=float, default=0.5, help="gaussian: sigma")
    p.add_argument("--l2-clip", type=float, default=0.05, help="gaussian: L2 clip S")
    p.add_argument("--sample-rate", type=float, default=0.5, help="dpsgd: patient rate q")
    p.add_argument("--patient-clip", type=float, default=1.0, help="dpsgd: L2 clip C")
    p.add_argument(
        "--target-epsilon", type=float, default=8.0, help="dpsgd: whole-run epsilon per node"
    )
    p.add_argument(
        "--holdout", type=int, default=3, help="held-out consortium cases scoring the model"
    )
    p.add_argument(
        "--budget",
        action="append",
        default=[],
        metavar="NODE=EPSILON",
        help="give a node a privacy budget, e.g. site-3=2000 (repeatable)",
    )
    p.add_argument(
        "--hd95",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="nodes also measure the 95th-percentile Hausdorff distance (default on)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--port", type=int, default=8443, help="aggregator port (0, or taken: a free one)"
    )
    p.add_argument("--timeout", type=float, default=1800.0, help="give up after this many s")
    p.add_argument(
        "--serve",
        action="store_true",
        help="keep the aggregator running afterwards, for status queries (Ctrl-C stops it)",
    )
    args = p.parse_args(argv)
    if args.nodes < 1 or args.rounds < 1 or args.cases < 2 * args.nodes:
        p.error("need at least 1 node, 1 round and 2 cases per node")
    if args.volume % 8 or args.crop % 8 or args.crop > args.volume:
        p.error("--volume and --crop must be multiples of 8, and crop <= volume")
    if not 0 <= args.port <= 65535:
        p.error("--port must be between 0 and 65535")
    return args


def privacy_policy(args: argparse.Namespace) -> PrivacyPolicy:
    mechanism = Mechanism(args.privacy)
    if mechanism == Mechanism.SVT:
        return PrivacyPolicy(
            mechanism=mechanism,
            fraction=args.fraction,
            clip=args.clip,
            epsilon=args.epsilon if args.epsilon is not None else DEFAULT_SVT_EPSILON,
        )
    if mechanism == Mechanism.PARTIAL:
        return PrivacyPolicy(mechanism=mechanism, fraction=args.fraction, clip=args.clip)
    if mechanism == Mechanism.GAUSSIAN:
        return PrivacyPolicy(
            mechanism=mechanism, noise_multiplier=args.noise_multiplier, l2_clip=args.l2_clip
        )
    if mechanism == Mechanism.DPSGD:
        return PrivacyPolicy(
            mechanism=mechanism,
            sample_rate=args.sample_rate,
            l2_clip=args.patient_clip,
            target_epsilon=args.target_epsilon,
        )
    return PrivacyPolicy()


def describe(policy: PrivacyPolicy) -> str:
    return mechanism_for(policy.mechanism).describe(policy)


def prepare(args: argparse.Namespace, names: list[str]) -> None:
    pki = args.workdir / "pki"
    print(f"[setup] certificates for the aggregator, {', '.join(names)} and admin in {pki}")
    bootstrap(pki, nodes=names, admins=("admin",))
    sizes = uneven_site_sizes(len(names), args.cases, args.seed)
    shape = (args.volume,) * 3
    for index, (name, size) in enumerate(zip(names, sizes, strict=True), start=1):
        print(f"[setup] {name}: {size} synthetic BraTS-layout cases of {args.volume}^3")
        write_site(args.workdir / "data" / name, index, size, shape, args.seed)
    if args.holdout:
        print(f"[setup] consortium: {args.holdout} held-out cases that no node trains on")
        write_holdout(args.workdir / "data", len(names) + 1, args.holdout, args.volume, args.seed)


def watch(admin_http: httpx.Client, run: RunView, deadline: float) -> list[RoundView]:
    """Print a line whenever a round changes; return the rounds once the run has ended."""
    last: dict[int, tuple[str, int]] = {}
    start = time.monotonic()
    while time.monotonic() < deadline:
        rounds = [
            RoundView.model_validate(r)
            for r in admin_http.get(f"{API_PREFIX}/runs/{run.id}/rounds").json()
        ]
        for r in rounds:
            key = (str(r.state), len(r.reported_nodes))
            if last.get(r.round) != key:
                last[r.round] = key
                label = "evaluation" if r.kind == "evaluate" else f"round {r.round}/{run.rounds}"
                who = ", ".join(r.reported_nodes) or "-"
                print(
                    f"[{time.monotonic() - start:6.1f}s] {label}: {r.state}, "
                    f"{len(r.reported_nodes)}/{len(r.expected_nodes)} reported ({who})",
                    flush=True,
                )
        state = RunView.model_validate(admin_http.get(f"{API_PREFIX}/runs/{run.id}").json()).state
        if state not in ("running", "paused"):
            return rounds
        time.sleep(1.0)
    raise TimeoutError("the demo run did not finish in time")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    names = [f"site-{i}" for i in range(1, args.nodes + 1)]
    for stale in ("aggregator", "nodes", "logs"):
        shutil.rmtree(args.workdir / stale, ignore_errors=True)
    prepare(args, names)
    pki = args.workdir / "pki"
    port = args.port if args.port and port_is_free(args.port) else free_port()
    url = f"https://127.0.0.1:{port}"
    agg_log = args.workdir / "logs" / "aggregator.log"
    aggregator = spawn(
        "services.aggregator.server",
        aggregator_env(Kit.of(pki, "aggregator"), args.workdir / "aggregator", port),
        agg_log,
    )
    nodes = []
    try:
        admin = Kit.of(pki, "admin").http(url)
        wait_healthy(admin, aggregator, agg_log)
        print(f"[setup] aggregator up at {url} (mutual TLS)")
        request = RunCreate(
            name="demo",
            rounds=args.rounds,
            expected_nodes=names,
            min_nodes=max(1, len(names) - 1),
            round_timeout_s=600.0,
            model=ModelConfig(init_filters=args.init_filters),
            plan=TrainingPlan(
                local_epochs=1,
                max_steps=args.steps,
                learning_rate=args.lr,
                batch_size=1,
                crop_size=(args.crop,) * 3,
                seed=args.seed,
                hd95=args.hd95,
            ),
            privacy=privacy_policy(args),
            seed=args.seed,
        )
        response = admin.post(f"{API_PREFIX}/runs", content=request.model_dump_json(),
                              headers={"content-type": "application/json"})  # fmt: skip
        response.raise_for_status()
        run = RunView.model_validate(response.json())
        print(f"[setup] run {run.id}: {args.rounds} rounds over {len(names)} nodes; starting nodes")
        threads = max(1, 2 // len(names))
        budgets = dict(item.split("=", 1) for item in args.budget)
        for name in names:
            extra = {"FEDSEG_PRIVACY_BUDGET_EPSILON": budgets[name]} if name in budgets else {}
            env = node_env(
                Kit.of(pki, name),
                url,
                args.workdir / "data" / name,
                args.workdir / "nodes" / name,
                OMP_NUM_THREADS=str(threads),
                FEDSEG_LOG_LEVEL="warning",
                **extra,
            )
            nodes.append(spawn("services.node.main", env, args.workdir / "logs" / f"{name}.log"))
        rounds = watch(admin, run, time.monotonic() + args.timeout)
        final = RunView.model_validate(admin.get(f"{API_PREFIX}/runs/{run.id}").json())
        for process in nodes:
            process.wait(60)
        report(args, rounds, final)
        if args.holdout:
            report_holdout(args, admin, final)
        if args.serve:
            serve_until_interrupted(pki, url)
    finally:
        for process in nodes:
            stop(process)
        stop(aggregator)
    return 0 if final.state == "completed" else 1


def serve_until_interrupted(pki: Path, url: str) -> None:
    print(
        "\nthe aggregator keeps running; query it with the admin certificate, e.g.\n"
        f"  curl --cacert {pki}/ca.pem --cert {pki}/admin.pem --key {pki}/admin-key.pem "
        f"{url}/api/v1/rounds\n(Ctrl-C to stop)",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print()


def report(args: argparse.Namespace, rounds: list[RoundView], final: RunView) -> None:
    print()
    print(round_table(rounds))
    dice = final_dice(rounds)
    if dice is not None:
        print(
            f"\nfinal global model, mean over nodes' validation splits: TC {dice.tc:.3f}  "
            f"WT {dice.wt:.3f}  ET {dice.et:.3f}  mean {dice.mean:.3f}"
        )
    else:
        print(f"\nnodes report no Dice: {reported_numbers(final.privacy).value} under this policy")
    hd95 = final_hd95(rounds)
    if hd95 is not None:
        print(f"HD95 of the final global model: {format_hd95(hd95)}")
    print(f"\nprivacy: {describe(final.privacy)}; epsilon per node per round:")
    print(privacy_table(rounds))
    print(f"run {final.id}: {final.state}{f' ({final.detail})' if final.detail else ''}")
    print(f"logs: {args.workdir / 'logs'}")


def report_holdout(args: argparse.Namespace, admin: httpx.Client, final: RunView) -> None:
    """The final global model scored by the consortium on its held-out cases."""
    validation, cases = score_model(
        admin,
        final.global_model,
        final.model,
        args.workdir / "data" / HOLDOUT_FOLDER,
        args.crop,
        hd95=args.hd95,
    )
    d = validation.dice
    print(
        f"final global model on {cases} held-out consortium cases: TC {d.tc:.3f}  "
        f"WT {d.wt:.3f}  ET {d.et:.3f}  mean {d.mean:.3f}"
    )
    if validation.hd95 is not None:
        print(f"HD95 on the held-out cases: {format_hd95(validation.hd95)}")


if __name__ == "__main__":
    sys.exit(main())
