"""``fedseg-admin dashboard`` as a real process: its one-line refusals and a clean Ctrl-C."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from services.demo.processes import Kit, free_port


def _command(pki_dir: Path, *args: str) -> list[str]:
    kit = Kit.of(pki_dir, "admin")
    # Nothing is sent to the aggregator before the browser asks: any https URL does here.
    connection = ["--url", f"https://127.0.0.1:{free_port()}", "--ca", str(kit.ca)]
    connection += ["--cert", str(kit.cert), "--key", str(kit.key)]
    return [sys.executable, "-m", "services.admin.main", *connection, "dashboard", *args]


def _run(pki_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command(pki_dir, *args), capture_output=True, text=True, timeout=60, check=False
    )


def test_dashboard_on_a_busy_port_is_one_line_and_exit_2(pki_dir: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = _run(pki_dir, "--port", str(port))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"fedseg-admin: error: cannot listen on 127.0.0.1:{port}: the port is already in "
        "use; stop what holds it or choose another --port\n"
    )


def test_dashboard_refuses_a_non_loopback_host_in_one_line(pki_dir: Path) -> None:
    done = _run(pki_dir, "--host", "0.0.0.0", "--port", "0")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "fedseg-admin: error: --host 0.0.0.0 is not a loopback address: anyone who reaches "
        "it reads the federation's status with your certificate; use 127.0.0.1, or "
        "--allow-remote\n"
    )


def test_dashboard_serves_until_ctrl_c_and_exits_0(pki_dir: Path) -> None:
    process = subprocess.Popen(
        _command(pki_dir, "--port", "0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.fullmatch(
            r"dashboard on (http://127\.0\.0\.1:\d+/dashboard/) \(read-only, via "
            r"https://127\.0\.0\.1:\d+ as admin\.pem\); Ctrl-C stops it\n",
            line,
        )
        assert found is not None, line
        page = httpx.get(found[1])
        assert page.status_code == 200
        assert "<title>fedseg dashboard</title>" in page.text
        # The aggregator is not there: the page's API call is a 502 that says so.
        runs = httpx.get(found[1].replace("/dashboard/", "/api/v1/runs"))
        assert runs.status_code == 502
        assert runs.json()["detail"].startswith("cannot reach the aggregator at https://")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert (process.returncode, out, err) == (0, "dashboard stopped\n", "")


def test_dashboard_with_allow_remote_binds_and_warns(pki_dir: Path) -> None:
    process = subprocess.Popen(
        _command(pki_dir, "--host", "0.0.0.0", "--port", "0", "--allow-remote"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stderr is not None
        line = process.stdout.readline()
        port = re.match(r"dashboard on http://0\.0\.0\.0:(\d+)/dashboard/ ", line)
        assert port is not None, line
        assert process.stderr.readline() == (
            f"fedseg-admin: warning: --allow-remote: anyone who reaches 0.0.0.0:{port[1]} "
            "reads the federation's status with your certificate\n"
        )
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
        assert (process.returncode, out, err) == (0, "dashboard stopped\n", "")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
