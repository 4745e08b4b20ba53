"""What leaves a real node when the aggregator is the adversary: one release per round, no
exact numbers under DP, every release on the ledger (scripted aggregator, real mTLS)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from services.demo.processes import Kit, node_env, spawn
from services.node.data.synthetic_sites import write_site
from services.node.ledger import PrivacyLedger, ReleaseKind, federation_id
from shared.model import ModelConfig
from shared.pki import bootstrap
from shared.schemas import Mechanism, MetricsRelease, PrivacyPolicy, RoundKind, TrainingPlan
from tests.e2e.scripted_aggregator import Script, Sent, serving

pytestmark = pytest.mark.slow
MODEL = ModelConfig(init_filters=8, blocks_down=(1, 1), blocks_up=(1,))
PLAN = TrainingPlan(max_steps=2, batch_size=1, crop_size=(16, 16, 16), hd95=True)
POLICIES = {
    "svt": PrivacyPolicy(mechanism=Mechanism.SVT, fraction=0.1, clip=1e-3, epsilon=1000.0),
    "gaussian": PrivacyPolicy(mechanism=Mechanism.GAUSSIAN, noise_multiplier=1.0, l2_clip=0.1),
    "dpsgd": PrivacyPolicy(
        mechanism=Mechanism.DPSGD, sample_rate=0.5, l2_clip=1.0, noise_multiplier=1.0
    ),
}
TRAIN, EVALUATE = RoundKind.TRAIN, RoundKind.EVALUATE


def _run_node(script: Script, pki: Path, data: Path, state: Path, log: Path) -> None:
    with serving(script, pki) as url:
        env = node_env(Kit.of(pki, "site-1"), url, data, state, OMP_NUM_THREADS="1",
                       FEDSEG_VAL_FRACTION="0.5", FEDSEG_POLL_WAIT_S="1")  # fmt: skip
        process = spawn("services.node.main", env, log)
        try:
            process.wait(240)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0, log.read_text()[-3000:]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("site-1")
    write_site(data, 1, 4, (24, 24, 24), seed=5)
    return data


def test_node_releases_one_set_of_bytes_per_federation_run_and_round(
    site: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    ledgers = []
    for federation in ("first", "second"):  # two CAs: two federations that reuse run id 1
        pki = tmp_path / f"pki-{federation}"
        bootstrap(pki, nodes=["site-1"], admins=[])
        script = Script(MODEL, PLAN, POLICIES["svt"], rounds=1,
                        tasks=[(1, 1, TRAIN)] * 5 + [(1, 2, EVALUATE)] * 2)  # fmt: skip
        _run_node(script, pki, site, state, tmp_path / f"{federation}.log")
        uploads = script.bodies("/update")
        assert len(uploads) == 5
        assert len({u.sha256 for u in uploads}) == 1  # the same bytes, never a second noising
        evaluations = script.bodies("/evaluation")
        assert len(evaluations) == 2
        assert evaluations[0].body == evaluations[1].body
        declines = script.bodies("/decline")
        # Each re-issued task got the same bytes; refused (another nonce), it was declined.
        assert len(declines) == 4 + 1
        for decline in declines:
            assert "was already answered" in str(decline.json()["reason"])
        ledgers.append((federation_id(pki / "ca.pem"), uploads[0].sha256))
    ledger = PrivacyLedger(state)
    entries = ledger.entries()
    assert [(e.key.federation, e.key.run_id, e.key.round, e.key.kind) for e in entries] == [
        (ledgers[0][0], 1, 1, ReleaseKind.UPDATE),
        (ledgers[0][0], 1, 2, ReleaseKind.EVALUATION),
        (ledgers[1][0], 1, 1, ReleaseKind.UPDATE),
        (ledgers[1][0], 1, 2, ReleaseKind.EVALUATION),
    ]
    assert [entries[0].sha256, entries[2].sha256] == [ledgers[0][1], ledgers[1][1]]
    assert ledger.total().epsilon == pytest.approx(2000.0)  # two SVT releases, metrics withheld
    assert ledger.total().releases == 4


def _numbers_are_protected(sent: list[Sent], policy: PrivacyPolicy) -> None:
    """Every number about the data in every body is withheld, public or paid for."""
    announce = next(s for s in sent if s.path.endswith("/nodes/announce")).json()
    assert (announce["num_train_cases"], announce["num_val_cases"]) == (None, None)
    manifests = [s.manifest() for s in sent if s.path.endswith("/update")]
    assert manifests
    laplace = policy.metrics is MetricsRelease.LAPLACE
    for manifest in manifests:
        assert manifest["num_samples"] == PLAN.max_steps  # public, from the plan
        metrics = manifest["metrics"]
        assert isinstance(metrics, dict)
        assert metrics["protection"] == (policy.metrics or MetricsRelease.WITHHELD).value
        for withheld in ("hd95_global", "hd95_local", "train_loss", "train_seconds"):
            assert metrics[withheld] is None, withheld
        for dice in ("dice_global", "dice_local"):
            assert (metrics[dice] is not None) is laplace, dice
    for report in (s.json() for s in sent if s.path.endswith("/evaluation")):
        metrics = report["metrics"]
        assert isinstance(metrics, dict)
        assert metrics["hd95_global"] is None
        assert (metrics["dice_global"] is not None) is laplace
        assert (report["num_samples"] is not None) is laplace


@pytest.mark.parametrize("mechanism", sorted(POLICIES))
def test_node_sends_no_exact_number_under_a_dp_policy(
    mechanism: str, site: Path, tmp_path: Path
) -> None:
    pki = tmp_path / "pki"
    bootstrap(pki, nodes=["site-1"], admins=[])
    policy = POLICIES[mechanism]
    script = Script(MODEL, PLAN, policy, rounds=2,
                    tasks=[(1, 1, TRAIN), (1, 2, TRAIN), (1, 3, EVALUATE)])  # fmt: skip
    _run_node(script, pki, site, tmp_path / "state", tmp_path / "node.log")
    _numbers_are_protected(script.sent, policy)
    entries = PrivacyLedger(tmp_path / "state").entries()
    assert [e.key.kind for e in entries] == [ReleaseKind.UPDATE] * 2 + [ReleaseKind.EVALUATION]
    sent = {s.sha256 for s in script.sent}
    assert all(e.sha256 in sent for e in entries)  # the ledger names the exact bytes sent


def test_node_pays_for_laplace_noised_dice(site: Path, tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    bootstrap(pki, nodes=["site-1"], admins=[])
    policy = POLICIES["svt"].model_copy(
        update={"metrics": MetricsRelease.LAPLACE, "metrics_epsilon": 0.5}
    )
    script = Script(MODEL, PLAN, policy, rounds=1, tasks=[(1, 1, TRAIN), (1, 2, EVALUATE)])
    _run_node(script, pki, site, tmp_path / "state", tmp_path / "node.log")
    _numbers_are_protected(script.sent, policy)
    ledger = PrivacyLedger(tmp_path / "state")
    update, evaluation = ledger.entries()
    assert [s.mechanism for s in update.spends] == [Mechanism.SVT, MetricsRelease.LAPLACE,
                                                    MetricsRelease.LAPLACE]  # fmt: skip
    assert [s.epsilon for s in evaluation.spends] == [0.5]
    assert ledger.total().epsilon == pytest.approx(1000.0 + 3 * 0.5)
    manifest = next(s for s in script.sent if s.path.endswith("/update")).manifest()
    total = manifest["privacy_total"]
    assert isinstance(total, dict)
    assert total["epsilon"] == pytest.approx(1001.0)
    assert total["seq"] == 1
    assert json.loads(json.dumps(total))["ledger_id"] == ledger.ledger_id
