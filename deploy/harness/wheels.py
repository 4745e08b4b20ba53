"""A local package index on loopback: the CPU torch wheel (and its dependencies) for builds."""

from __future__ import annotations

import hashlib
import html
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from deploy.harness.commands import CheckError, run, say


def project_name(wheel: str) -> str:
    """PEP 503 name of a wheel file: ``Jinja2-3.1.6-py3-none-any.whl`` -> ``jinja2``."""
    return re.sub(r"[-_.]+", "-", wheel.split("-", 1)[0]).lower()


def write_simple_index(wheels: Path, root: Path) -> None:
    """``root/simple/<name>/index.html`` for every wheel in ``wheels`` (a PEP 503 index)."""
    by_name: dict[str, list[Path]] = {}
    for wheel in sorted(wheels.glob("*.whl")):
        by_name.setdefault(project_name(wheel.name), []).append(wheel)
    for name, files in by_name.items():
        page = root / "simple" / name / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        links = []
        for wheel in files:
            digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
            href = html.escape(f"../../wheels/{wheel.name}#sha256={digest}")
            links.append(f'<a href="{href}">{html.escape(wheel.name)}</a><br>')
        page.write_text("<!DOCTYPE html>\n<html><body>\n" + "\n".join(links) + "\n</body></html>\n")


def download_torch(cache: Path, torch_spec: str, constraints: Path) -> Path:
    """The CPU torch wheel and its dependencies (pinned by ``constraints``), by this machine's
    own pip configuration (find-links holds the CPU wheel); a folder with ``wheels/``."""
    root = cache / "index"
    wheels = root / "wheels"
    cpu_spec = f"{torch_spec}+cpu"
    run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
         "--dest", str(wheels), "-c", str(constraints), cpu_spec],
        quiet=True,
    )  # fmt: skip
    torch = [w.name for w in wheels.glob("torch-*.whl")]
    if not torch or not all("+cpu" in name for name in torch):
        raise CheckError(f"expected only CPU torch wheels in {wheels}, found {torch}")
    write_simple_index(wheels, root)
    return root


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class LocalIndex:
    """``with LocalIndex(root) as index:`` ``python -m http.server`` on 127.0.0.1 serving
    ``root``; builds reach it with ``--network=host`` at ``index.url``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/simple/"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LocalIndex:
        argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                "--directory", str(self.root), str(self.port)]  # fmt: skip
        self.process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )
        until = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.url, timeout=5):  # noqa: S310 (loopback http)
                    break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > until:
                    raise CheckError(f"the local index did not start on {self.url}") from None
                time.sleep(0.2)
        say(f"local package index for the builds: {self.url}")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
