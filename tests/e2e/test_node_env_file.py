"""A hospital without Docker: `fedseg-node --env-file kit/node.env` with the kit as written."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.node.data.synthetic_sites import write_site
from shared.model import ModelConfig
from shared.schemas import RunCreate, RunView, TrainingPlan
from tests.e2e.conftest import AggregatorProcess, start_aggregator

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def test_a_kit_from_fedseg_pki_joins_a_run_from_a_fresh_folder(
    pki_dir: Path, tmp_path: Path
) -> None:
    agg: AggregatorProcess = start_aggregator(pki_dir, tmp_path / "agg")
    try:
        kit = tmp_path / "hospital" / "kit"
        issued = subprocess.run(
            [str(BIN / "fedseg-pki"), "kit", "--dir", str(pki_dir), "--out", str(kit),
             "--name", "site-9", "--aggregator-url", agg.url],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert issued.returncode == 0, issued.stderr
        assert "FEDSEG_TLS_CERT=/kit/site-9.pem" in (kit / "node.env").read_text()
        data = tmp_path / "hospital" / "archive"
        write_site(data, 1, 3, (24, 24, 24), seed=2)
        request = RunCreate(
            rounds=1, expected_nodes=["site-9"], min_nodes=1, round_timeout_s=300,
            model=ModelConfig(init_filters=8),
            plan=TrainingPlan(max_steps=1, crop_size=(24, 24, 24), seed=1),
        )  # fmt: skip
        with agg.client("admin") as admin:
            created = admin.post("/api/v1/runs", json=request.model_dump(mode="json"))
            assert created.status_code == 201
            node = subprocess.run(
                [str(BIN / "fedseg-node"), "--env-file", "kit/node.env", "--data-dir", "archive",
                 "--state-dir", "state", "--exit-when-done"],
                cwd=tmp_path / "hospital", capture_output=True, text=True, timeout=600,
                check=False, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
            )  # fmt: skip
            for _ in range(20):
                run = RunView.model_validate(admin.get("/api/v1/runs/1").json())
                if run.state != "running":
                    break
                time.sleep(0.5)
        assert node.returncode == 0, node.stderr[-3000:]
        assert run.state == "completed"
        assert "Traceback" not in node.stderr
    finally:
        agg.process.terminate()
        agg.process.wait(10)
