"""Plain-text rendering of rounds for the demo and the operator's status command."""

from __future__ import annotations

from collections.abc import Sequence

from shared.schemas import RegionDice, RegionDistance, RoundKind, RoundView


def _mean(d: RegionDice | None) -> str:
    return "  -  " if d is None else f"{d.mean:.3f}"


def round_table(rounds: Sequence[RoundView]) -> str:
    """One row per training round; 'global' is the Dice of the model the round produced,
    measured by the nodes on their validation splits at the start of the next round."""
    by_number = {r.round: r for r in rounds}
    header = (
        f"{'round':>5}  {'state':<11} {'nodes':>5}  {'samples':>7}  {'before':>6}  {'after':>6}"
        f"  {'global TC':>9} {'WT':>5} {'ET':>5} {'mean':>5}  {'seconds':>7}"
    )
    lines = [header, "-" * len(header)]
    for r in rounds:
        if r.kind != RoundKind.TRAIN:
            continue
        produced = by_number.get(r.round + 1)
        g = produced.mean_dice_global if produced is not None else None
        glob = (
            f"{g.tc:>9.3f} {g.wt:>5.3f} {g.et:>5.3f} {g.mean:>5.3f}"
            if g is not None
            else f"{'-':>9} {'-':>5} {'-':>5} {'-':>5}"
        )
        seconds = (r.closed_at - r.opened_at).total_seconds() if r.closed_at else None
        secs = f"{seconds:>7.1f}" if seconds is not None else f"{'-':>7}"
        nodes = f"{len(r.reported_nodes)}/{len(r.expected_nodes)}"
        lines.append(
            f"{r.round:>5}  {r.state:<11} {nodes:>5}  {r.num_samples:>7}  "
            f"{_mean(r.mean_dice_global):>6}  {_mean(r.mean_dice_local):>6}  {glob}  {secs}"
        )
    return "\n".join(lines)


def final_dice(rounds: Sequence[RoundView]) -> RegionDice | None:
    """Dice of the final global model, from the evaluation round."""
    for r in rounds:
        if r.kind == RoundKind.EVALUATE:
            return r.mean_dice_global
    return None


def final_hd95(rounds: Sequence[RoundView]) -> RegionDistance | None:
    """HD95 in mm of the final global model, from the evaluation round (runs with plan.hd95)."""
    for r in rounds:
        if r.kind == RoundKind.EVALUATE:
            return r.mean_hd95_global
    return None


def format_hd95(hd95: RegionDistance) -> str:
    return f"TC {hd95.tc:.1f}  WT {hd95.wt:.1f}  ET {hd95.et:.1f}  mean {hd95.mean:.1f} mm"


def _eps(value: float | None) -> str:
    return "inf" if value is None else f"{value:.4g}"


def privacy_table(rounds: Sequence[RoundView]) -> str:
    """Epsilon each node spent per training round, and its ledger's cumulative total."""
    train = [r for r in rounds if r.kind == RoundKind.TRAIN]
    nodes = sorted({u.node for r in train for u in r.updates})
    if not nodes:
        return "privacy: no node released anything"
    header = f"{'node':<10}" + "".join(f"{'r' + str(r.round):>10}" for r in train)
    header += f"  {'cumulative':>12}  accounting"
    lines = [header, "-" * len(header)]
    for node in nodes:
        cells, total, method = [], None, ""
        for r in train:
            update = next((u for u in r.updates if u.node == node), None)
            if update is None:
                cells.append(f"{'-':>10}")
            elif update.status == "declined":
                cells.append(f"{'declined':>10}")
            else:
                spend = update.privacy
                cells.append(f"{_eps(spend.epsilon) if spend else '?':>10}")
            if update is not None and update.privacy_total is not None:
                total, method = update.privacy_total, update.privacy_total.accounting
        cumulative = "-" if total is None else _eps(total.epsilon)
        if total is not None and total.delta:
            cumulative += f" (d={total.delta:g})"
        lines.append(f"{node:<10}" + "".join(cells) + f"  {cumulative:>12}  {method}")
    declined = [
        (r.round, u.node, u.detail) for r in train for u in r.updates if u.status == "declined"
    ]
    lines += [f"round {n}: {node} declined: {detail}" for n, node, detail in declined]
    return "\n".join(lines)
