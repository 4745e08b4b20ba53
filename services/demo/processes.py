"""Start the aggregator and nodes as real local processes, as the demo and e2e tests do."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from shared.schemas import API_PREFIX
from shared.tls import client_ssl_context


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass(frozen=True)
class Kit:
    """The PKI files a party needs, as laid out by ``shared.pki.bootstrap``."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def of(cls, pki_dir: Path, name: str) -> Kit:
        return cls(pki_dir / "ca.pem", pki_dir / f"{name}.pem", pki_dir / f"{name}-key.pem")

    def http(self, base_url: str, timeout: float = 30.0) -> httpx.Client:
        context = client_ssl_context(self.cert, self.key, self.ca)
        return httpx.Client(base_url=base_url, verify=context, timeout=timeout)


def aggregator_env(kit: Kit, state_dir: Path, port: int, **extra: str) -> dict[str, str]:
    return {
        "FEDSEG_HOST": "127.0.0.1",
        "FEDSEG_PORT": str(port),
        "FEDSEG_TLS_CERT": str(kit.cert),
        "FEDSEG_TLS_KEY": str(kit.key),
        "FEDSEG_TLS_CA": str(kit.ca),
        "FEDSEG_STATE_DIR": str(state_dir),
        "FEDSEG_LOG_LEVEL": "warning",
        **extra,
    }


def node_env(kit: Kit, url: str, data_dir: Path, state_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "FEDSEG_AGGREGATOR_URL": url,
        "FEDSEG_TLS_CERT": str(kit.cert),
        "FEDSEG_TLS_KEY": str(kit.key),
        "FEDSEG_TLS_CA": str(kit.ca),
        "FEDSEG_DATA_DIR": str(data_dir),
        "FEDSEG_STATE_DIR": str(state_dir),
        "FEDSEG_EXIT_WHEN_DONE": "true",
        **extra,
    }


def spawn(
    module: str, env: Mapping[str, str], log_path: Path, args: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    """``python -m module *args`` with ``env`` on top of ours, output to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def wait_healthy(
    client: httpx.Client, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 60.0
) -> None:
    """Block until the aggregator answers /health over mTLS, or raise with its log."""
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        if process.poll() is not None:
            raise RuntimeError(
                f"aggregator exited with {process.returncode}:\n{log_path.read_text()[-3000:]}"
            )
        try:
            if client.get(f"{API_PREFIX}/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"aggregator not healthy after {timeout} s:\n{log_path.read_text()[-3000:]}")


def stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
