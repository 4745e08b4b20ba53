"""The federated settings: the real aggregator app and one NodeRunner per site, in-process."""

from __future__ import annotations

import ssl
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import torch
from starlette.types import ASGIApp

from benchmarks.quality.config import QualityConfig, Setting
from benchmarks.quality.report import say_progress
from benchmarks.quality.results import SettingResult
from benchmarks.quality.scoring import ModelScores
from benchmarks.quality.sites import SiteData
from services.aggregator.api.main import create_app
from services.aggregator.core.blobs import BlobStore
from services.aggregator.core.config import AggregatorSettings
from services.aggregator.core.db import make_engine
from services.aggregator.core.security import _WithPeerCertificate, tls_extension
from services.aggregator.federation import Federation
from services.node.client import AggregatorClient
from services.node.data.crops import steps_per_epoch
from services.node.ledger import PrivacyLedger, federation_id
from services.node.runner import LocalData, NodeRunner, PrivacyGuard
from shared.pki import bootstrap
from shared.privacy.mechanisms import mechanism_for
from shared.schemas import (
    API_PREFIX,
    PrivacyPolicy,
    RegionDice,
    RoundKind,
    RoundView,
    RunCreate,
    RunState,
    TaskPoll,
)

with warnings.catch_warnings():
    # starlette nudges TestClient users towards httpx2; the node ships with httpx.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient


class InProcessFederation:
    """The aggregator app and one NodeRunner per site in this process; one run per setting.

    Requests go through starlette's TestClient with each holder's certificate in the ASGI
    TLS extension, where uvicorn's peer-certificate protocol would put it. The round ticker
    is replaced by calling ``Federation.advance`` after every sweep over the nodes. Each
    site's node keeps its state (models, privacy ledger) in its own folder per setting.

    Under a DP policy nodes withhold their Dice, so the benchmark scores every round's base
    model, and the run's final model, itself (benchmarks.quality.scoring) on every site's
    validation cases; the same scores serve the settings without DP.
    """

    def __init__(self, workdir: Path, names: Sequence[str]) -> None:
        self.workdir = workdir
        self.names = list(names)
        self.pki = workdir / "pki"
        bootstrap(self.pki, nodes=self.names, admins=("admin",))
        self.federation = federation_id(self.pki / "ca.pem")

    def _client(self, app: object, name: str) -> TestClient:
        der = ssl.PEM_cert_to_DER_cert((self.pki / f"{name}.pem").read_text())
        asgi = cast(ASGIApp, _WithPeerCertificate(app, tls_extension(der)))
        return TestClient(asgi, base_url="https://t")

    def run(
        self,
        setting: Setting,
        config: QualityConfig,
        sites: Sequence[SiteData],
        device: torch.device,
    ) -> SettingResult:
        """One run of `config.rounds` rounds plus the evaluation round under setting.policy."""
        if setting.policy is None:
            raise ValueError(f"setting {setting.name} has no privacy policy to federate with")
        began = time.perf_counter()
        state = self.workdir / "".join(c if c.isalnum() else "-" for c in setting.name)
        engine = make_engine(f"sqlite:///{state / 'aggregator.db'}")
        try:
            federation = Federation(engine, BlobStore(state / "blobs"))
            federation.migrate()
            settings = AggregatorSettings(
                tls_cert=self.pki / "aggregator.pem",
                tls_key=self.pki / "aggregator-key.pem",
                tls_ca=self.pki / "ca.pem",
                state_dir=state,
            )
            app = create_app(settings, federation)
            request = RunCreate(
                name=setting.name[:64],
                rounds=config.rounds,
                expected_nodes=self.names,
                min_nodes=len(self.names),
                model=config.model,
                plan=config.plan,
                privacy=setting.policy,
                aggregation=setting.aggregation,
                seed=config.plan.seed,
            )
            response = self._client(app, "admin").post(
                f"{API_PREFIX}/runs", json=request.model_dump(mode="json")
            )
            response.raise_for_status()
            run_id = int(response.json()["id"])
            runners = [
                NodeRunner(
                    AggregatorClient(self._client(app, site.name), max_attempts=1),
                    LocalData(train=site.train, val=site.val),
                    state / site.name,
                    device,
                    site.name,
                    self._guard(state / site.name, setting.policy),
                )
                for site in sites
            ]
            scores = ModelScores(federation.model_bytes, config, sites, device)
            self._drive(federation, run_id, runners, setting, config, scores)
            rounds = federation.list_rounds(run_id)
            per_round = [scores(r.base_model) for r in sorted(rounds, key=lambda r: r.round)]
            policy = federation.get_run(run_id).privacy
            federation.close()
        finally:
            engine.dispose()
        seconds = time.perf_counter() - began
        return self._result(setting, policy, rounds, per_round, sites, config, seconds)

    def _guard(self, state_dir: Path, policy: PrivacyPolicy) -> PrivacyGuard:
        """A fresh ledger per site and setting, so each setting's epsilon is its own run's."""
        return PrivacyGuard(
            ledger=PrivacyLedger(state_dir, target_delta=policy.delta),
            federation=self.federation,
        )

    def _drive(
        self,
        federation: Federation,
        run_id: int,
        runners: Sequence[NodeRunner],
        setting: Setting,
        config: QualityConfig,
        scores: ModelScores,
    ) -> None:
        """Let every node do its task, close the round, repeat until the run has ended."""
        while federation.get_run(run_id).state == RunState.RUNNING:
            numbers = set()
            for runner in runners:
                # AggregatorClient.poll sets a long-poll timeout, which TestClient refuses.
                answer = runner.client.http.get(f"{API_PREFIX}/tasks/next")
                task = TaskPoll.model_validate_json(answer.content).task
                if task is not None:
                    runner.handle(task)
                    numbers.add(task.round)
            advanced = False
            while federation.advance():
                advanced = True
            if not numbers and not advanced:
                raise RuntimeError(f"run {run_id} ({setting.name}) is stuck: no task, no change")
            for number in sorted(numbers):
                dice = scores(federation.get_round(run_id, number).base_model)
                say_progress(setting.name, number - 1, config.rounds, dice)
        run = federation.get_run(run_id)
        if run.state != RunState.COMPLETED:
            raise RuntimeError(f"run {run_id} ({setting.name}) ended {run.state}: {run.detail}")

    @staticmethod
    def _result(
        setting: Setting,
        policy: PrivacyPolicy,
        rounds: Sequence[RoundView],
        per_round: list[RegionDice],
        sites: Sequence[SiteData],
        config: QualityConfig,
        seconds: float,
    ) -> SettingResult:
        """The setting's Dice per round with what the nodes' ledgers say it cost.

        ``policy`` is the run's as the aggregator validated it (DP-SGD: sigma derived from
        the whole run's target epsilon).
        """
        last_train = [
            r for r in sorted(rounds, key=lambda r: r.round) if r.kind == RoundKind.TRAIN
        ][-1]
        spends = [u.privacy for u in last_train.updates if u.privacy is not None]
        totals = [u.privacy_total for u in last_train.updates if u.privacy_total is not None]
        epochs = config.rounds * config.plan.local_epochs
        if mechanism_for(policy.mechanism).trains_privately:
            # DP-SGD takes exactly max_steps steps per round, however many patients a site has.
            steps = epochs * int(config.plan.max_steps or 0) * len(sites)
        else:
            steps = epochs * sum(steps_per_epoch(len(site.train), config.plan) for site in sites)
        return SettingResult(
            setting=setting,
            per_round=per_round,
            steps=steps,
            seconds=seconds,
            epsilon_round=_worst([spend.epsilon for spend in spends]),
            epsilon_total=_worst([total.epsilon for total in totals]),
            delta=max((spend.delta for spend in spends), default=0.0),
            noise_multiplier=policy.noise_multiplier,
        )


def _worst(epsilons: Sequence[float | None]) -> float | None:
    """The largest epsilon over nodes; None (no guarantee) when any node has none or no data."""
    if not epsilons or any(epsilon is None for epsilon in epsilons):
        return None
    return max(epsilon for epsilon in epsilons if epsilon is not None)
