"""Real sockets: a connection that idles, trickles its headers or stalls its body is closed.

Each case opens a mutual-TLS socket to a real aggregator (both HTTP protocol classes) with
1-2 s deadlines and checks when the server hangs up, what it logged, and that a stalled
upload left no temporary file.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.demo.processes import Kit, stop
from shared.tls import client_ssl_context
from tests.e2e.conftest import AggregatorProcess, start_aggregator

pytestmark = pytest.mark.slow

IDLE_S, HEADER_S, BODY_S = 2, 2, 2


@pytest.fixture(params=["httptools", "h11"])
def strict(
    pki_dir: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[AggregatorProcess]:
    agg = start_aggregator(
        pki_dir,
        tmp_path,
        FEDSEG_HTTP_PROTOCOL=request.param,
        FEDSEG_IDLE_TIMEOUT_S=str(IDLE_S),
        FEDSEG_HEADER_TIMEOUT_S=str(HEADER_S),
        FEDSEG_BODY_TIMEOUT_S=str(BODY_S),
    )
    yield agg
    stop(agg.process)


def _connect(agg: AggregatorProcess, name: str = "site-1") -> ssl.SSLSocket:
    kit = Kit.of(agg.pki_dir, name)
    context = client_ssl_context(kit.cert, kit.key, kit.ca)
    raw = socket.create_connection(("127.0.0.1", agg.port), timeout=30)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def _seconds_until_closed(sock: ssl.SSLSocket, started: float, limit: float = 20.0) -> float:
    """Reads until the server closes; the seconds since ``started``."""
    sock.settimeout(limit)
    while True:
        try:
            if not sock.recv(65536):
                break
        except (ConnectionResetError, ssl.SSLError):
            break
    return time.monotonic() - started


def _log(agg: AggregatorProcess) -> str:
    time.sleep(0.2)  # the warning is written just after the close
    return agg.log.read_text()


def test_a_connection_that_never_sends_a_request_is_closed(strict: AggregatorProcess) -> None:
    with _connect(strict) as sock:
        waited = _seconds_until_closed(sock, time.monotonic())
    assert IDLE_S - 0.5 <= waited < IDLE_S + 5
    assert f"no request within {IDLE_S} s" in _log(strict)


def test_headers_trickled_a_line_at_a_time_are_cut_off(strict: AggregatorProcess) -> None:
    with _connect(strict) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")
        sock.settimeout(0.4)
        closed_at: float | None = None
        for i in range(40):  # a header line every 0.4 s: steady progress, never complete
            try:
                sock.sendall(f"X-Trickle-{i}: {i}\r\n".encode())
                if sock.recv(65536) == b"":
                    closed_at = time.monotonic() - started
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                closed_at = time.monotonic() - started
                break
    assert closed_at is not None, "the server kept reading trickled headers for 16 s"
    assert HEADER_S - 0.5 <= closed_at < HEADER_S + 5
    assert f"request headers not complete {HEADER_S} s after they began" in _log(strict)


def test_a_stalled_upload_is_dropped_and_its_temporary_file_removed(
    strict: AggregatorProcess,
) -> None:
    tmp = strict.state_dir / "blobs" / "tmp"
    with _connect(strict) as sock:
        sock.sendall(
            b"PUT /api/v1/runs/1/rounds/1/update HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Length: 10000000\r\n\r\n"
        )
        for _ in range(3):  # some progress, then silence
            time.sleep(0.5)
            sock.sendall(b"\0" * 100_000)
        last_sent = time.monotonic()
        time.sleep(0.5)
        assert any(tmp.iterdir()), "the upload should be streaming into a temporary file"
        waited = _seconds_until_closed(sock, last_sent)
    assert BODY_S - 0.5 <= waited < BODY_S + 5
    log = _log(strict)
    assert f"request body stalled for {BODY_S} s" in log
    assert "the client disconnected before its request was complete; nothing was stored" in log
    assert "Traceback" not in log
    assert list(tmp.iterdir()) == []


def test_a_slow_but_steady_upload_is_not_cut_off(strict: AggregatorProcess) -> None:
    """Pauses shorter than the body deadline, for longer than it in all, are fine."""
    body = b"\0" * 40_000
    with _connect(strict) as sock:
        sock.sendall(
            b"PUT /api/v1/runs/1/rounds/1/update HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/octet-stream\r\n"
            + f"Content-Length: {4 * len(body)}\r\n\r\n".encode()
        )
        for _ in range(4):  # 4 s in all, each pause 1 s
            sock.sendall(body)
            time.sleep(1.0)
        sock.settimeout(20)
        answer = sock.recv(65536)
    # It arrives whole and is judged on its content (no such run), not cut off.
    assert answer.startswith(b"HTTP/1.1 4"), answer[:200]
    assert b"stalled" not in strict.log.read_bytes()


def test_a_keep_alive_client_that_reuses_its_connection_is_served(
    strict: AggregatorProcess,
) -> None:
    with strict.client("site-1") as client:
        for _ in range(3):
            assert client.get("/api/v1/health").status_code == 200
            time.sleep(IDLE_S / 2)
    assert "closed the connection" not in strict.log.read_text()
