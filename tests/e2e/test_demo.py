"""`make demo`'s program, small: CA, aggregator and three nodes as processes over mTLS, to
the round table, Dice and HD95 per region and the privacy spent."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_demo_runs_a_federation_and_prints_the_report(tmp_path: Path) -> None:
    demo = Path(sys.executable).with_name("fedseg-demo")
    args = ["--workdir", str(tmp_path), "--rounds", "1", "--cases", "6", "--volume", "24"]
    args += ["--crop", "24", "--steps", "1", "--port", "0"]
    done = subprocess.run(
        [str(demo), *args], capture_output=True, text=True, timeout=300, check=False
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "(mutual TLS)" in out
    assert re.search(r"^\[ *[0-9.]+s\] round 1/1: closed, 3/3 reported", out, re.M)
    assert re.search(r"^ +1  closed +3/3 +3 ", out, re.M), out
    region = r"TC [0-9.]+  WT [0-9.]+  ET [0-9.]+  mean [0-9.]+"
    # Under SVT the nodes withhold their Dice; the consortium scores its held-out cases.
    assert re.search(r"^nodes report no Dice: withheld under this policy$", out, re.M), out
    assert re.search(
        rf"^final global model on 3 held-out consortium cases: {region}$", out, re.M
    ), out
    assert re.search(rf"^HD95 on the held-out cases: {region} mm$", out, re.M)
    for site in ("site-1", "site-2", "site-3"):
        assert re.search(rf"^{site} +3e\+05 +3e\+05  basic composition$", out, re.M)
    assert "run 1: completed" in out
    for key in (tmp_path / "pki").glob("*-key.pem"):  # keys are created 0600
        assert key.stat().st_mode & 0o077 == 0, key


def test_demo_refuses_a_bad_port(tmp_path: Path) -> None:
    demo = Path(sys.executable).with_name("fedseg-demo")
    done = subprocess.run(
        [str(demo), "--workdir", str(tmp_path), "--port", "70000"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--port must be between 0 and 65535" in done.stderr
    assert not any(tmp_path.iterdir())
