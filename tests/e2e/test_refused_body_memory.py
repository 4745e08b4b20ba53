"""A refused body costs the aggregator no memory: its peak RSS does not grow with the body.

A real aggregator process over mutual TLS gets 192 MiB bodies it must refuse: a JSON run
request from a node certificate (capped at FEDSEG_MAX_JSON_BYTES while it streams) and an
update upload past FEDSEG_MAX_UPDATE_BYTES. Its high-water mark (VmHWM in
/proc/<pid>/status) is read before and after; it may grow by a few MiB of buffers, far less
than the bodies sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.demo.processes import stop
from tests.e2e.conftest import AggregatorProcess, start_aggregator

pytestmark = pytest.mark.slow

MIB = 1 << 20
BODY = 192 * MIB
GROWTH_LIMIT = 48 * MIB
"""A quarter of the body: what buffers and a warm TLS connection may take, not the body."""


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def _chunks(total: int, opening: bytes) -> Iterator[bytes]:
    yield opening
    sent = len(opening)
    block = b"x" * MIB
    while sent < total:
        yield block
        sent += len(block)


@pytest.fixture
def capped(pki_dir: Path, tmp_path: Path) -> Iterator[AggregatorProcess]:
    agg = start_aggregator(pki_dir, tmp_path, FEDSEG_MAX_UPDATE_BYTES=str(16 * MIB))
    yield agg
    stop(agg.process)


def _send(client: httpx.Client, method: str, path: str, body: Iterator[bytes], kind: str) -> int:
    """The status of the refusal, or 0 if the server hung up before the client was done."""
    try:
        answer = client.request(method, path, content=body, headers={"content-type": kind})
    except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
        return 0
    return answer.status_code


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_refused_bodies_do_not_grow_the_aggregators_peak_memory(
    capped: AggregatorProcess,
) -> None:
    with capped.client("site-1") as node:
        for _ in range(3):  # warm up: TLS, the app's first requests
            assert node.get("/api/v1/health").status_code == 200
        assert node.post("/api/v1/runs", json={}).status_code == 403
        before = _peak_rss(capped.process.pid)
        statuses = [
            _send(node, "POST", "/api/v1/runs", _chunks(BODY, b'{"name": "'), "application/json"),
            _send(
                node,
                "PUT",
                "/api/v1/runs/1/rounds/1/update",
                _chunks(BODY, b""),
                "application/octet-stream",
            ),
        ]
    after = _peak_rss(capped.process.pid)
    assert after - before < GROWTH_LIMIT, (
        f"peak RSS grew by {(after - before) / MIB:.0f} MiB for {BODY // MIB} MiB bodies"
    )
    assert set(statuses) <= {413, 0}, statuses
    with capped.client("admin") as admin:
        assert admin.get("/api/v1/health").status_code == 200
    assert list((capped.state_dir / "blobs" / "tmp").iterdir()) == []
    assert "Traceback" not in capped.log.read_text()
