"""Plain-text tables and progress lines for the admin CLI (rounds reuse the demo's table)."""

from __future__ import annotations

from collections.abc import Sequence

from shared.schemas import NodeView, RoundKind, RoundView, RunView


def runs_table(runs: Sequence[RunView]) -> str:
    """One row per run, newest last."""
    if not runs:
        return "no runs yet (create one with `fedseg-admin create-run`)"
    header = f"{'id':>4}  {'name':<16} {'state':<10} {'round':>7}  {'created (UTC)':<16}  nodes"
    lines = [header, "-" * len(header)]
    for run in sorted(runs, key=lambda r: r.id):
        at = f"{run.current_round or '-'}/{run.rounds}"
        created = run.created_at.strftime("%Y-%m-%d %H:%M")
        lines.append(
            f"{run.id:>4}  {run.name:<16} {run.state:<10} {at:>7}  {created:<16}  "
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
        f"{'name':<16} {'role':<6} {'last seen (UTC)':<19} {'rounds':>6} {'cases':>5}  "
        f"{'epsilon':>9}  device"
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
            f"{node.name:<16} {node.role:<6} {seen:<19} {node.rounds_joined:>6} {cases:>5}  "
            f"{epsilon:>9}  {node.device or '-'}"
        )
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
