"""End-to-end fixtures: a real aggregator process under uvicorn with mutual TLS."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from services.demo.processes import Kit, aggregator_env, free_port, spawn, stop, wait_healthy


@dataclass
class AggregatorProcess:
    url: str
    port: int
    state_dir: Path
    log: Path
    pki_dir: Path
    process: subprocess.Popen[bytes]
    extra_env: dict[str, str]

    def client(self, name: str, pki_dir: Path | None = None) -> httpx.Client:
        return Kit.of(pki_dir or self.pki_dir, name).http(self.url)

    def start(self) -> None:
        env = aggregator_env(
            Kit.of(self.pki_dir, "aggregator"), self.state_dir, self.port, **self.extra_env
        )
        self.process = spawn("services.aggregator.server", env, self.log)
        with self.client("admin") as admin:
            wait_healthy(admin, self.process, self.log)

    def kill(self) -> None:
        self.process.kill()  # SIGKILL: no shutdown handlers run
        self.process.wait()


def start_aggregator(pki_dir: Path, root: Path, **extra_env: str) -> AggregatorProcess:
    port = free_port()
    agg = AggregatorProcess(
        url=f"https://127.0.0.1:{port}",
        port=port,
        state_dir=root / "aggregator",
        log=root / "aggregator.log",
        pki_dir=pki_dir,
        process=None,  # type: ignore[arg-type]
        extra_env=dict(extra_env),
    )
    agg.start()
    return agg


@pytest.fixture(params=["httptools", "h11"])
def aggregator(
    pki_dir: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[AggregatorProcess]:
    """A real aggregator, served through each of the peer-certificate protocol classes."""
    agg = start_aggregator(pki_dir, tmp_path, FEDSEG_HTTP_PROTOCOL=request.param)
    yield agg
    stop(agg.process)
