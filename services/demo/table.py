"""Plain-text rendering of rounds for the demo and the operator's status command."""

from __future__ import annotations

from collections.abc import Sequence

from shared.schemas import RegionDice, RoundKind, RoundView


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
