"""The node's round loop: poll, download, evaluate, train, filter, upload; resumable."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from services.node.client import AggregatorClient
from services.node.data.cases import Case
from services.node.evaluation import Validation, validate
from services.node.ledger import PrivacyLedger
from services.node.privacy import over_budget, round_cost, tighten
from services.node.progress import ProgressBar
from services.node.training import train_local, weight_delta
from shared import errors
from shared.model import build_model
from shared.privacy.apply import apply_policy
from shared.schemas import (
    Decline,
    EvaluationReport,
    PrivacyPolicy,
    RegionDice,
    RoundKind,
    RunState,
    Task,
    UpdateManifest,
    UpdateMetrics,
)
from shared.tensors import load_file, update_bytes

log = logging.getLogger("fedseg.node")
TERMINAL = (RunState.COMPLETED, RunState.FAILED, RunState.ABORTED)


@dataclass(frozen=True)
class LocalData:
    train: Sequence[Case]
    val: Sequence[Case]


@dataclass(frozen=True)
class PrivacyGuard:
    """The hospital's own privacy settings: a stricter local policy and a budget."""

    ledger: PrivacyLedger
    local_policy: PrivacyPolicy | None = None
    budget_epsilon: float | None = None
    budget_delta: float = 1e-5


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".partial")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(path)


class NodeRunner:
    """One hospital's participation in the federation.

    A computed update is written to ``state_dir/pending`` before it is uploaded, so a node
    restarted mid-round re-polls, receives the same task and sends the same bytes, which
    the aggregator's per-(round, node) idempotency accepts exactly once.
    """

    def __init__(
        self,
        client: AggregatorClient,
        data: LocalData,
        state_dir: Path,
        device: torch.device,
        name: str,
        guard: PrivacyGuard | None = None,
        workers: int = 0,
    ) -> None:
        self.client = client
        self.name = name
        self.data = data
        self.state_dir = state_dir
        self.device = device
        self.workers = workers
        self.guard = guard or PrivacyGuard(PrivacyLedger(state_dir / "privacy-ledger.db"))

    def _pending(self, task: Task) -> Path:
        return self.state_dir / "pending" / f"{task.task_nonce}.safetensors"

    def _validate(self, model: torch.nn.Module, task: Task) -> Validation | None:
        if not self.data.val:
            return None
        return validate(model, self.data.val, task.plan.crop_size, self.device, hd95=task.plan.hd95)

    def handle(self, task: Task) -> None:
        """Do one task to completion (upload accepted, or the round moved on)."""
        pending = self._pending(task)
        if pending.is_file():
            log.info("round %d: resuming the upload of a computed update", task.round)
            self._upload(task, pending)
            return
        base_path = self.client.download_model(task.base_model, self.state_dir / "models")
        base = load_file(base_path)
        model = build_model(task.model)
        model.load_state_dict(base)
        model.to(self.device)
        before = self._validate(model, task)
        dice_global = before.dice if before else None
        hd95_global = before.hd95 if before else None
        if task.kind == RoundKind.EVALUATE:
            report = EvaluationReport(
                run_id=task.run_id,
                round=task.round,
                task_nonce=task.task_nonce,
                base_model=task.base_model,
                num_samples=len(self.data.val),
                metrics=UpdateMetrics(dice_global=dice_global, hd95_global=hd95_global),
            )
            self.client.report_evaluation(report)
            log.info("round %d: evaluated the final model: %s", task.round, _fmt(dice_global))
            return
        policy = tighten(task.privacy, self.guard.local_policy)
        refusal = over_budget(
            self.guard.ledger.total(extra=round_cost(policy)),
            self.guard.budget_epsilon,
            self.guard.budget_delta,
        )
        if refusal is not None:
            self._decline(task, refusal)
            return
        started = time.perf_counter()
        seed = round_seed(task.plan.seed, task.round, self.name)
        plan = task.plan.model_copy(update={"seed": seed})
        progress = ProgressBar(f"round {task.round}")
        result = train_local(
            model, self.data.train, plan, self.device, progress=progress, workers=self.workers
        )
        after = self._validate(model, task)
        dice_local = after.dice if after else None
        trained = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        # Privacy noise must be unpredictable to everyone else, the aggregator included, so
        # its generator is seeded from the OS, never from the run's public seed.
        noise = torch.Generator().manual_seed(secrets.randbits(63))
        release = apply_policy(weight_delta(trained, base), policy, noise)
        # Write-ahead: the spend is on the ledger before the bytes can leave.
        self.guard.ledger.record(task.run_id, task.round, release.spend)
        manifest = UpdateManifest(
            run_id=task.run_id,
            round=task.round,
            task_nonce=task.task_nonce,
            base_model=task.base_model,
            num_samples=result.num_samples,
            metrics=UpdateMetrics(
                dice_global=dice_global,
                dice_local=dice_local,
                hd95_global=hd95_global,
                hd95_local=after.hd95 if after else None,
                train_loss=result.mean_loss,
                train_seconds=time.perf_counter() - started,
            ),
            sparse=tuple(release.sparse),
            excluded=release.excluded,
            privacy=release.spend,
            privacy_total=self.guard.ledger.total(),
        )
        _write_atomic(pending, update_bytes(release.dense, manifest, release.sparse))
        log.info(
            "round %d: trained %d steps on %d cases (loss %.4f); Dice before %s, after %s",
            task.round, result.steps, result.num_samples, result.mean_loss,
            _fmt(dice_global), _fmt(dice_local),
        )  # fmt: skip
        self._upload(task, pending)

    def _decline(self, task: Task, reason: str) -> None:
        log.warning("round %d: releasing nothing: %s", task.round, reason)
        self.client.decline(
            Decline(
                run_id=task.run_id,
                round=task.round,
                task_nonce=task.task_nonce,
                base_model=task.base_model,
                reason=reason,
                privacy_total=self.guard.ledger.total(),
            )
        )

    def _upload(self, task: Task, pending: Path) -> None:
        try:
            receipt = self.client.upload_update(task.run_id, task.round, pending.read_bytes())
        except (errors.StaleModelError, errors.RoundNotOpenError) as exc:
            log.warning("round %d: update no longer wanted (%s); dropping it", task.round, exc)
        else:
            log.info("round %d: update accepted (sha256 %s…)", task.round, receipt.sha256[:12])
        pending.unlink(missing_ok=True)

    def run(self, poll_wait_s: float, exit_when_done: bool) -> int:
        """Poll for tasks until stopped (or, with ``exit_when_done``, until the run ends)."""
        seen_active = False
        while True:
            poll = self.client.poll(poll_wait_s)
            if poll.task is not None:
                seen_active = True
                try:
                    self.handle(poll.task)
                except errors.ConflictError as exc:
                    log.warning("round %d: %s", poll.task.round, exc)
                continue
            if poll.run_state in (RunState.RUNNING, RunState.PAUSED):
                seen_active = True
            if exit_when_done and seen_active and poll.run_state in TERMINAL:
                log.info("run %s is %s; exiting", poll.run_id, poll.run_state)
                return 0 if poll.run_state == RunState.COMPLETED else 1


def round_seed(seed: int, number: int, node: str) -> int:
    """A distinct, reproducible seed per (run seed, round, node) for crops and shuffles."""
    digest = hashlib.sha256(f"{seed}:{number}:{node}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _fmt(dice: RegionDice | None) -> str:
    if dice is None:
        return "n/a"
    return f"TC {dice.tc:.3f} WT {dice.wt:.3f} ET {dice.et:.3f} mean {dice.mean:.3f}"
