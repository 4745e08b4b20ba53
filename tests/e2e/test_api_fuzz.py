"""schemathesis against a real aggregator over mutual TLS: no 5xx, every status documented.

The CLI generates requests from the served ``/openapi.json`` (coverage, fuzzing and
stateful phases, a fixed seed and a bounded number of examples per operation) as an admin
and as a node, and checks each answer: ``not_a_server_error`` (no 5xx) and
``status_code_conformance`` (the status is one the operation documents,
services.aggregator.api.openapi). The aggregator's log must hold no traceback.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.demo.processes import stop
from tests.e2e.conftest import AggregatorProcess, start_aggregator

pytestmark = pytest.mark.slow

EXAMPLES = 10


@pytest.fixture(scope="module")
def fuzzed(pki_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AggregatorProcess]:
    # A 1 s long poll, so generated task polls answer quickly.
    agg = start_aggregator(pki_dir, tmp_path_factory.mktemp("fuzz"), FEDSEG_LONG_POLL_S="1")
    yield agg
    stop(agg.process)


@pytest.mark.parametrize("holder", ["admin", "site-1"])
def test_schemathesis_finds_no_server_error_and_no_undocumented_status(
    fuzzed: AggregatorProcess, holder: str
) -> None:
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert cli is not None, "schemathesis is in requirements-dev.txt"
    pki = fuzzed.pki_dir
    done = subprocess.run(
        [
            cli, "run", f"{fuzzed.url}/openapi.json",
            "--tls-verify", str(pki / "ca.pem"),
            "--request-cert", str(pki / f"{holder}.pem"),
            "--request-cert-key", str(pki / f"{holder}-key.pem"),
            "--checks", "not_a_server_error,status_code_conformance",
            "--max-examples", str(EXAMPLES), "--seed", "1", "--workers", "1",
            "--request-timeout", "10", "--no-color",
        ],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    report = done.stdout[-8000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    assert "Tested: 22" in done.stdout, report
    assert "Traceback" not in fuzzed.log.read_text()
