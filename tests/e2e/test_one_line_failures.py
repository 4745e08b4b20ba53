"""Every expected failure, run as the user meets it, ends in one line and no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from services.demo.processes import Kit, aggregator_env, free_port, node_env
from services.node.data.synthetic_sites import write_site
from shared.errors import CertificateRevokedError
from shared.pki import load_certificate
from shared.schemas import NodeState
from tests.e2e.conftest import AggregatorProcess, start_aggregator

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _run(
    tool: str, args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 90.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / tool), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _one_line(result: subprocess.CompletedProcess[str], tool: str) -> str:
    """The failure's stderr: exactly one line, naming the tool, with no traceback."""
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{tool}: "), lines[0]
    return lines[0]


def _admin_args(kit: Kit, url: str) -> list[str]:
    return ["--url", url, "--ca", str(kit.ca), "--cert", str(kit.cert), "--key", str(kit.key)]


@pytest.fixture
def live(pki_dir: Path, tmp_path: Path) -> Iterator[AggregatorProcess]:
    agg = start_aggregator(pki_dir, tmp_path)
    yield agg
    agg.process.terminate()
    agg.process.wait(10)


def _node_env(kit: Kit, url: str, root: Path, **extra: str) -> dict[str, str]:
    data = root / "data"
    if not data.exists():
        write_site(data, 1, 2, (24, 24, 24), seed=3)
    # Node logs go to stderr too; at warning level only the final line is left.
    return node_env(kit, url, data, root / "state", FEDSEG_LOG_LEVEL="error", **extra)


def test_a_revoked_node_stops_with_one_line_and_exit_3(
    live: AggregatorProcess, pki_dir: Path, tmp_path: Path
) -> None:
    serial = load_certificate(pki_dir / "site-2.pem").serial_number
    with live.client("admin") as admin:
        revocation = {"serial": format(serial, "x"), "name": "site-2"}
        assert admin.post("/api/v1/revocations", json=revocation).status_code == 204
    result = _run("fedseg-node", [], _node_env(Kit.of(pki_dir, "site-2"), live.url, tmp_path))
    line = _one_line(result, "fedseg-node")
    assert result.returncode == 3
    assert line.startswith("fedseg-node: refused: aggregator answered 403: certificate ")
    assert CertificateRevokedError.code not in line  # words for people, the code for programs


def test_a_data_failure_is_reported_and_the_node_shows_failed(
    live: AggregatorProcess, pki_dir: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-archive"
    empty.mkdir()
    env = _node_env(Kit.of(pki_dir, "site-1"), live.url, tmp_path, FEDSEG_DATA_DIR=str(empty))
    result = _run("fedseg-node", [], env)
    line = _one_line(result, "fedseg-node")
    assert result.returncode == 2, result.stderr
    assert line.startswith("fedseg-node: cannot start: ")
    with live.client("admin") as admin:
        (node,) = [n for n in admin.get("/api/v1/nodes").json() if n["name"] == "site-1"]
    assert node["state"] == NodeState.FAILED
    assert node["state_detail"].startswith("data failure (DataError), stopped;")
    assert "empty-archive" not in node["state_detail"]  # no paths of the hospital's files


def test_a_broken_pipe_is_quiet(live: AggregatorProcess, pki_dir: Path) -> None:
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first byte (`| head` that exited)
    try:
        result = subprocess.run(
            [str(BIN / "fedseg-admin"), *_admin_args(Kit.of(pki_dir, "admin"), live.url), "nodes"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write)
    assert result.returncode == 0
    assert result.stderr == ""


def test_the_wrong_ca_says_which_side(
    live: AggregatorProcess, pki_dir: Path, other_ca_dir: Path
) -> None:
    wrong = Kit(other_ca_dir / "ca.pem", pki_dir / "admin.pem", pki_dir / "admin-key.pem")
    result = _run("fedseg-admin", [*_admin_args(wrong, live.url), "health"])
    line = _one_line(result, "fedseg-admin")
    assert result.returncode == 1
    assert "the aggregator's certificate is not signed by the CA this side trusts" in line
    foreign = Kit(pki_dir / "ca.pem", other_ca_dir / "site-1.pem", other_ca_dir / "site-1-key.pem")
    result = _run("fedseg-admin", [*_admin_args(foreign, live.url), "health"])
    line = _one_line(result, "fedseg-admin")
    assert "most likely it refused this side's certificate" in line


def test_a_plain_http_server_is_named(pki_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"https://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1.0)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        result = _run("fedseg-admin", [*_admin_args(Kit.of(pki_dir, "admin"), url), "health"])
        assert "does not speak TLS" in _one_line(result, "fedseg-admin")
        node = _run("fedseg-node", [], _node_env(Kit.of(pki_dir, "site-1"), url, tmp_path))
        line = _one_line(node, "fedseg-node")
        assert node.returncode == 2
        assert "does not speak TLS" in line
    finally:
        server.terminate()
        server.wait(10)


def test_a_busy_port_is_reported_before_listening(pki_dir: Path, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = aggregator_env(Kit.of(pki_dir, "aggregator"), tmp_path / "agg", port)
        result = _run("fedseg-aggregator", [], env)
    line = _one_line(result, "fedseg-aggregator")
    assert result.returncode == 2
    assert line == (
        f"fedseg-aggregator: cannot start: port {port} on 127.0.0.1 is already in use; "
        "stop the other process or set FEDSEG_PORT to a free port"
    )
    assert "listening" not in result.stdout + result.stderr


def test_an_invalid_run_policy_is_one_line(live: AggregatorProcess, pki_dir: Path) -> None:
    create = [
        "create-run", "--nodes", "site-1", "--rounds", "1", "--privacy", "svt",
        "--fraction", "0.3", "--clip", "0",
    ]  # fmt: skip
    result = _run("fedseg-admin", [*_admin_args(Kit.of(pki_dir, "admin"), live.url), *create])
    line = _one_line(result, "fedseg-admin")
    assert result.returncode in (1, 2)
    assert "clip" in line
