"""The node's round loop: poll, download, evaluate, train, protect, record, send; resumable."""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from services.node.client import AggregatorClient
from services.node.data.cases import Case
from services.node.disclosure import evaluation_numbers, public_weight, update_metrics
from services.node.dpsgd_training import DpSgdSettings, train_local_dpsgd
from services.node.evaluation import Validation, validate
from services.node.heartbeat import INTERVAL_S as HEARTBEAT_S
from services.node.heartbeat import heartbeat
from services.node.ledger import LedgerEntry, PrivacyLedger, ReleaseKey, ReleaseKind
from services.node.privacy import local_target_refusal, node_policy, over_budget, remaining_cost
from services.node.progress import ProgressBar
from services.node.training import TrainResult, train_local, weight_delta
from shared import errors
from shared.model import build_model
from shared.privacy.apply import apply_policy
from shared.privacy.mechanisms import mechanism_for, reported_numbers
from shared.schemas import (
    Decline,
    EvaluationReport,
    MetricsRelease,
    PrivacyPolicy,
    PrivacySpend,
    PrivacyTotal,
    RegionDice,
    RoundKind,
    RunState,
    Task,
    UpdateManifest,
)
from shared.tensors import load_file, update_bytes

log = logging.getLogger("fedseg.node")
TERMINAL = (RunState.COMPLETED, RunState.FAILED, RunState.ABORTED)
REFUSED_AGAIN = (
    errors.PermissionDeniedError,
    errors.InvalidRequestError,
    errors.ConflictError,
    errors.NotFoundError,
    errors.PayloadTooLargeError,
    errors.UpdateRejectedError,
    errors.RequestValidationFailedError,
)
"""What the aggregator may answer to a release sent again for a re-issued task."""


@dataclass(frozen=True)
class LocalData:
    train: Sequence[Case]
    val: Sequence[Case]


@dataclass(frozen=True)
class PrivacyGuard:
    """The hospital's own privacy settings: its ledger, a stricter local policy, a budget."""

    ledger: PrivacyLedger
    federation: str
    """shared.pki fingerprint of the federation CA this node trusts (ledger.federation_id)."""
    local_policy: PrivacyPolicy | None = None
    budget_epsilon: float | None = None
    budget_delta: float = 1e-5


def _secret_generator(device: torch.device | str = "cpu") -> torch.Generator:
    # Privacy randomness must be unpredictable to everyone else, the aggregator included,
    # so it is seeded from the OS, never from the run's public seed.
    return torch.Generator(device=device).manual_seed(secrets.randbits(63))


class NodeRunner:
    """One hospital's participation in the federation.

    Every body that carries numbers about the hospital's data is a release: it is
    recorded in the ledger (with its cost and the SHA-256 of its bytes, bytes archived)
    before it is sent. A task for a (federation, run, round) the ledger already answered,
    whether the node restarted or the aggregator re-issued it, gets those same bytes
    again and costs nothing new; if the aggregator refuses them, the node declines.
    """

    def __init__(
        self,
        client: AggregatorClient,
        data: LocalData,
        state_dir: Path,
        device: torch.device,
        name: str,
        guard: PrivacyGuard,
        workers: int = 0,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self.client = client
        self.heartbeat_s = heartbeat_s
        self.name = name
        self.data = data
        self.state_dir = state_dir
        self.device = device
        self.workers = workers
        self.guard = guard

    def _validate(self, model: torch.nn.Module, task: Task) -> Validation | None:
        if not self.data.val:
            return None
        return validate(model, self.data.val, task.plan.crop_size, self.device, hd95=task.plan.hd95)

    def _key(self, task: Task) -> ReleaseKey:
        kind = ReleaseKind.EVALUATION if task.kind == RoundKind.EVALUATE else ReleaseKind.UPDATE
        return ReleaseKey(self.guard.federation, task.run_id, task.round, kind)

    def handle(self, task: Task) -> None:
        """Do one task to completion (sent and answered, declined, or the round moved on)."""
        entry = self.guard.ledger.find(self._key(task))
        if entry is not None:
            self._send_again(task, entry)
            return
        try:
            policy = node_policy(task.privacy, self.guard.local_policy, task.plan, task.rounds)
        except errors.ConfigurationError as exc:
            self._decline(task, str(exc))
            return
        if task.kind == RoundKind.EVALUATE:
            self._evaluate(task, policy)
            return
        refusal = self._refusal(task, policy)
        if refusal is not None:
            self._decline(task, refusal)
            return
        self._train(task, policy)

    def _refusal(self, task: Task, policy: PrivacyPolicy) -> str | None:
        """Why this node must not train for the task, or None (checked before any training)."""
        reports = 2 if self.data.val else 0
        rest = remaining_cost(policy, task.plan, max(1, task.rounds - task.round + 1), reports)
        ledger = self.guard.ledger
        refusal = local_target_refusal(
            self.guard.local_policy, ledger.run_total(self.guard.federation, task.run_id, rest)
        )
        if refusal is not None:
            return refusal
        return over_budget(
            ledger.total(extra=rest), self.guard.budget_epsilon, self.guard.budget_delta
        )

    def _base_model(self, task: Task) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
        base = load_file(self.client.download_model(task.base_model, self.state_dir / "models"))
        model = build_model(task.model)
        model.load_state_dict(base)
        model.to(self.device)
        return model, base

    def _evaluate(self, task: Task, policy: PrivacyPolicy) -> None:
        mode = reported_numbers(policy)
        extra = remaining_cost(policy, task.plan, 0, 0)
        refusal = over_budget(
            self.guard.ledger.total(extra=extra), self.guard.budget_epsilon, self.guard.budget_delta
        )
        if refusal is not None:
            self._decline(task, refusal)
            return
        validation = None
        if mode is not MetricsRelease.WITHHELD:
            validation = self._validate(self._base_model(task)[0], task)
        metrics, count, spends = evaluation_numbers(
            mode, policy, validation, len(self.data.val), _secret_generator()
        )
        report = EvaluationReport(
            run_id=task.run_id,
            round=task.round,
            task_nonce=task.task_nonce,
            base_model=task.base_model,
            num_samples=count,
            metrics=metrics,
            privacy=spends[0],
            privacy_total=self._total_after(spends),
        )
        body = report.model_dump_json().encode()
        self.guard.ledger.record(self._key(task), spends, body)
        self.client.report_evaluation_bytes(task.run_id, task.round, body)
        log.info("round %d: evaluated the final model: %s", task.round, _fmt(metrics.dice_global))

    def _train(self, task: Task, policy: PrivacyPolicy) -> None:
        mode = reported_numbers(policy)
        model, base = self._base_model(task)
        before = self._validate(model, task) if mode is not MetricsRelease.WITHHELD else None
        started = time.perf_counter()
        result = self._train_locally(model, task, policy)
        seconds = time.perf_counter() - started
        after = self._validate(model, task) if mode is not MetricsRelease.WITHHELD else None
        trained = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        noise = _secret_generator()
        release = apply_policy(weight_delta(trained, base), policy, noise, task.plan)
        metrics, metric_spends = update_metrics(
            mode, policy, before, after, len(self.data.val), result.mean_loss, seconds, noise
        )
        spends = [release.spend, *metric_spends]
        manifest = UpdateManifest(
            run_id=task.run_id,
            round=task.round,
            task_nonce=task.task_nonce,
            base_model=task.base_model,
            num_samples=public_weight(mode, task.plan, result.num_samples),
            metrics=metrics,
            sparse=tuple(release.sparse),
            excluded=release.excluded,
            privacy=release.spend,
            privacy_total=self._total_after(spends),
        )
        body = update_bytes(release.dense, manifest, release.sparse)
        # Write-ahead: the release is on the ledger (bytes archived) before it can leave.
        entry = self.guard.ledger.record(self._key(task), spends, body)
        log.info(
            "round %d: trained %d steps (%s); ledger entry %d",
            task.round, result.steps, mechanism_for(policy.mechanism).describe(policy), entry.seq,
        )  # fmt: skip
        self._upload(task, body)

    def _train_locally(
        self, model: torch.nn.Module, task: Task, policy: PrivacyPolicy
    ) -> TrainResult:
        seed = round_seed(task.plan.seed, task.round, self.name)
        plan = task.plan.model_copy(update={"seed": seed})
        progress = ProgressBar(f"round {task.round}")
        if not mechanism_for(policy.mechanism).trains_privately:
            return train_local(
                model, self.data.train, plan, self.device, progress=progress, workers=self.workers
            )
        settings = DpSgdSettings(
            sample_rate=float(policy.sample_rate or 0.0),
            noise_multiplier=float(policy.noise_multiplier or 0.0),
            l2_clip=float(policy.l2_clip or 0.0),
            steps=int(plan.max_steps or 0),
            normaliser=plan.batch_size,
        )
        return train_local_dpsgd(
            model,
            self.data.train,
            plan,
            settings,
            self.device,
            sampling=_secret_generator(),
            noise=_secret_generator(self.device),
            progress=progress,
        )

    def _total_after(self, spends: Sequence[PrivacySpend]) -> PrivacyTotal:
        """This federation's total once ``spends`` are recorded as its next entry."""
        total = self.guard.ledger.federation_total(self.guard.federation, extra=spends)
        return total.model_copy(update={"seq": (total.seq or 0) + 1})

    def _send_again(self, task: Task, entry: LedgerEntry) -> None:
        """Answer a task whose (federation, run, round) is already on the ledger."""
        payload = self.guard.ledger.payload(entry)
        already = (
            f"run {task.run_id} round {task.round} was already answered "
            f"(ledger entry {entry.seq}, sha256 {entry.sha256[:12]}…)"
        )
        if payload is None:
            self._decline(
                task, f"{already} and its bytes are no longer kept; releasing nothing new"
            )
            return
        log.info("round %d: %s; sending the same bytes again", task.round, already)
        try:
            if entry.key.kind is ReleaseKind.EVALUATION:
                self.client.report_evaluation_bytes(task.run_id, task.round, payload)
            else:
                self.client.upload_update(task.run_id, task.round, payload)
        except (errors.StaleModelError, errors.RoundNotOpenError) as exc:
            log.warning("round %d: the release is no longer wanted (%s)", task.round, exc)
        except REFUSED_AGAIN as exc:
            self._decline(task, f"{already}; the aggregator refused the same bytes ({exc}), "
                                "so nothing new is released")  # fmt: skip

    def _decline(self, task: Task, reason: str) -> None:
        log.warning("round %d: releasing nothing: %s", task.round, reason)
        self.client.decline(
            Decline(
                run_id=task.run_id,
                round=task.round,
                task_nonce=task.task_nonce,
                base_model=task.base_model,
                reason=reason[:1000],
                privacy_total=self.guard.ledger.federation_total(self.guard.federation),
            )
        )

    def _upload(self, task: Task, body: bytes) -> None:
        try:
            receipt = self.client.upload_update(task.run_id, task.round, body)
        except (errors.StaleModelError, errors.RoundNotOpenError) as exc:
            log.warning("round %d: update no longer wanted (%s); dropping it", task.round, exc)
        else:
            log.info("round %d: update accepted (sha256 %s…)", task.round, receipt.sha256[:12])

    def run(self, poll_wait_s: float, exit_when_done: bool) -> int:
        """Poll for tasks until stopped (or, with ``exit_when_done``, until the run ends)."""
        seen_active = False
        while True:
            poll = self.client.poll(poll_wait_s)
            if poll.task is not None:
                seen_active = True
                try:
                    with heartbeat(self.client.heartbeat, self.heartbeat_s):
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
        return "withheld"
    return f"TC {dice.tc:.3f} WT {dice.wt:.3f} ET {dice.et:.3f} mean {dice.mean:.3f}"
