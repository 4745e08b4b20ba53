"""Plain-text tables and progress lines for the admin CLI (rounds reuse the demo's table)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from shared.schemas import NodeView, RoundKind, RoundState, RoundView, RunView

ROUND_LEGEND = (
    "before: mean Dice of the round's base model on the nodes' validation splits; "
    "after: of the nodes' locally trained models;\n"
    "global: of the model the round produced (measured at the start of the next round)."
)


def run_progress(run: RunView) -> str:
    """``2/4``, ``4/4 + evaluation`` (never past the total)."""
    current = run.current_round or 0
    if current > run.rounds:
        return f"{run.rounds}/{run.rounds} + evaluation"
    return f"{current or '-'}/{run.rounds}"


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    return f"{seconds // 60} min {seconds % 60:02d} s"


def current_round_line(run: RunView, rounds: Sequence[RoundView], now: datetime) -> str | None:
    """The open round: who is missing, the deadline, and an ETA from the rounds so far."""
    current = next(
        (r for r in rounds if r.state in (RoundState.OPEN, RoundState.AGGREGATING)), None
    )
    if current is None:
        return None
    answered = set(current.reported_nodes) | set(current.declined_nodes)
    missing = [n for n in current.expected_nodes if n not in answered]
    label = "evaluation" if current.kind == RoundKind.EVALUATE else f"round {current.round}"
    left = (current.deadline - now).total_seconds()
    deadline = f"deadline in {_duration(left)}" if left > 0 else "deadline passed"
    line = (
        f"{label} {current.state}: missing {', '.join(missing) or 'nobody'}; {deadline} "
        f"({current.deadline.strftime('%H:%M:%S')} UTC)"
    )
    closed = [
        (r.closed_at - r.opened_at).total_seconds()
        for r in rounds
        if r.kind == RoundKind.TRAIN and r.state == RoundState.CLOSED and r.closed_at
    ]
    if closed:
        per_round = sum(closed[-3:]) / len(closed[-3:])
        remaining = max(0, run.rounds - current.round) + (current.kind == RoundKind.TRAIN)
        elapsed = (now - current.opened_at).total_seconds()
        eta = max(0.0, remaining * per_round - elapsed)
        line += f"; run ETA about {_duration(eta)} (from the last {len(closed[-3:])} rounds)"
    return line


def runs_table(runs: Sequence[RunView]) -> str:
    """One row per run, newest last."""
    if not runs:
        return "no runs yet (create one with `fedseg-admin create-run`)"
    header = f"{'id':>4}  {'name':<16} {'state':<10} {'rounds':>18}  {'created (UTC)':<16}  nodes"
    lines = [header, "-" * len(header)]
    for run in sorted(runs, key=lambda r: r.id):
        created = run.created_at.strftime("%Y-%m-%d %H:%M")
        lines.append(
            f"{run.id:>4}  {run.name:<16} {run.state:<10} {run_progress(run):>18}  {created:<16}  "
            f"{', '.join(run.expected_nodes)} (min {run.min_nodes})"
        )
        if run.detail:
            lines.append(f"{'':>6}{run.detail}")
    return "\n".join(lines)


def nodes_table(nodes: Sequence[NodeView]) -> str:
    """One row per certificate holder the aggregator has seen."""
    if not nodes:
        return "no node has announced itself yet"
    header = (
        f"{'name':<16} {'role':<6} {'state':<8} {'last seen (UTC)':<19} {'rounds':>6} "
        f"{'cases':>5}  {'epsilon':>9}  device"
    )
    lines = [header, "-" * len(header)]
    for node in sorted(nodes, key=lambda n: n.name):
        seen = node.last_seen.strftime("%Y-%m-%d %H:%M:%S") if node.last_seen else "-"
        cases = "-" if node.num_train_cases is None else str(node.num_train_cases)
        total = node.privacy_total
        epsilon = (
            "-" if total is None else "inf" if total.epsilon is None else f"{total.epsilon:.4g}"
        )
        lines.append(
            f"{node.name:<16} {node.role:<6} {node.state:<8} {seen:<19} "
            f"{node.rounds_joined:>6} {cases:>5}  {epsilon:>9}  {node.device or '-'}"
        )
        if node.state_detail:
            lines.append(f"{'':<16} {node.state}: {node.state_detail}")
    lines += [f"{n.name}: {n.ledger_regression}" for n in nodes if n.ledger_regression]
    return "\n".join(lines)


def progress_line(elapsed_s: float, run: RunView, r: RoundView) -> str:
    """``[  12.3s] run 1 round 2/4: open, 1/3 reported (site-1)``."""
    label = "evaluation" if r.kind == RoundKind.EVALUATE else f"round {r.round}/{run.rounds}"
    who = f" ({', '.join(r.reported_nodes)})" if r.reported_nodes else ""
    line = (
        f"[{elapsed_s:6.1f}s] run {run.id} {label}: {r.state}, "
        f"{len(r.reported_nodes)}/{len(r.expected_nodes)} reported{who}"
    )
    if r.attempt > 1:
        line += f", attempt {r.attempt}"
    if r.declined_nodes:
        line += f", declined: {', '.join(r.declined_nodes)}"
    if r.detail:
        line += f" - {r.detail}"
    return line
