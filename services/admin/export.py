"""``fedseg-admin export``: a run's results as files a study can keep and cite.

``model.safetensors`` (the run's final global model, verified against its SHA-256),
``rounds.csv``, ``nodes.csv`` and ``privacy.csv``. Nothing is written over: every file is
written next to its final name and renamed in place, and an existing one is refused.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

from services.admin.client import AdminError
from shared.errors import ConfigurationError
from shared.schemas import NodeView, RegionDice, RoundView, RunView

FILES = ("model.safetensors", "rounds.csv", "nodes.csv", "privacy.csv")


def _dice(value: RegionDice | None) -> list[str]:
    if value is None:
        return ["", "", "", ""]
    return [f"{value.tc:.6f}", f"{value.wt:.6f}", f"{value.et:.6f}", f"{value.mean:.6f}"]


def rounds_rows(rounds: Sequence[RoundView]) -> Iterable[list[str]]:
    regions = ("tc", "wt", "et", "mean")
    yield [
        "round", "kind", "state", "attempt", "opened_at", "closed_at", "seconds",
        "expected_nodes", "reported_nodes", "declined_nodes", "num_samples", "base_model",
        "result_model", *(f"dice_base_{r}" for r in regions),
        *(f"dice_local_{r}" for r in regions), "detail",
    ]  # fmt: skip
    for r in rounds:
        seconds = (r.closed_at - r.opened_at).total_seconds() if r.closed_at else None
        yield [
            str(r.round), r.kind.value, r.state.value, str(r.attempt), r.opened_at.isoformat(),
            r.closed_at.isoformat() if r.closed_at else "",
            "" if seconds is None else f"{seconds:.3f}", " ".join(r.expected_nodes),
            " ".join(r.reported_nodes), " ".join(r.declined_nodes), str(r.num_samples),
            r.base_model, r.result_model or "", *_dice(r.mean_dice_global),
            *_dice(r.mean_dice_local), r.detail or "",
        ]  # fmt: skip


def nodes_rows(nodes: Sequence[NodeView]) -> Iterable[list[str]]:
    yield [
        "name", "role", "state", "state_detail", "last_seen", "device", "software_version",
        "rounds_joined", "epsilon_total", "delta_total", "releases", "epsilon_max",
        "ledger_regression", "last_error", "last_error_at",
    ]  # fmt: skip
    for n in nodes:
        total = n.privacy_total
        yield [
            n.name, n.role.value, n.state.value, n.state_detail or "",
            n.last_seen.isoformat() if n.last_seen else "", n.device or "",
            n.software_version or "", str(n.rounds_joined),
            "" if total is None or total.epsilon is None else repr(total.epsilon),
            "" if total is None else repr(total.delta),
            "" if total is None else str(total.releases),
            "" if n.privacy_epsilon_max is None else repr(n.privacy_epsilon_max),
            n.ledger_regression or "", n.last_error or "",
            n.last_error_at.isoformat() if n.last_error_at else "",
        ]  # fmt: skip


def privacy_rows(rounds: Sequence[RoundView]) -> Iterable[list[str]]:
    """One row per node per round: what that release cost and the node's running total."""
    yield [
        "round", "node", "status", "mechanism", "unit", "epsilon", "delta", "accounting",
        "epsilon_total", "delta_total", "releases_total", "detail",
    ]  # fmt: skip
    for r in rounds:
        for u in r.updates:
            spend, total = u.privacy, u.privacy_total
            yield [
                str(r.round), u.node, u.status.value,
                spend.mechanism.value if spend else "", spend.unit.value if spend else "",
                "" if spend is None or spend.epsilon is None else repr(spend.epsilon),
                "" if spend is None else repr(spend.delta), spend.accounting if spend else "",
                "" if total is None or total.epsilon is None else repr(total.epsilon),
                "" if total is None else repr(total.delta),
                "" if total is None else str(total.releases), u.detail or "",
            ]  # fmt: skip


def _csv(rows: Iterable[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode()


def _write_new(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_bytes(data)
    temporary.replace(path)


def export_run(
    out: Path,
    run: RunView,
    rounds: Sequence[RoundView],
    nodes: Sequence[NodeView],
    model: bytes,
) -> list[Path]:
    """Write the run's files into ``out`` (created); refuse if any of them exists."""
    if hashlib.sha256(model).hexdigest() != run.global_model:
        raise AdminError(f"the downloaded model does not hash to {run.global_model}")
    targets = [out / name for name in FILES]
    existing = [str(p) for p in targets if p.exists()]
    if existing:
        raise ConfigurationError(
            f"{', '.join(existing)} already exist; export into an empty folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    contents = (
        model,
        _csv(rounds_rows(rounds)),
        _csv(nodes_rows(nodes)),
        _csv(privacy_rows(rounds)),
    )
    for path, data in zip(targets, contents, strict=True):
        _write_new(path, data)
    return targets
