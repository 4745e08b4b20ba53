"""The Docker engine and Compose v2 the check needs, installed and started only when missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType

from deploy.harness.commands import CheckError, run, say
from deploy.harness.debian import fetch_verified

APT_PACKAGES = {"dockerd": "docker.io", "debootstrap": "debootstrap", "gpgv": "gpgv"}
"""Command -> the Debian (bookworm) package that provides it."""
COMPOSE_SUITE = "trixie"
COMPOSE_PACKAGES = ["docker-compose", "docker-buildx"]
"""Compose v2 and buildx (BuildKit secrets): bookworm has neither, trixie's need libc6 2.34."""


def _works(*argv: str) -> bool:
    found = subprocess.run(list(argv), capture_output=True, check=False, timeout=60)
    return found.returncode == 0


def ensure_apt_packages() -> None:
    """apt-get install what is missing (as root), saying so loudly: it changes this machine."""
    missing = sorted(
        {pkg for command, pkg in APT_PACKAGES.items() if shutil.which(command) is None}
    )
    if not missing:
        return
    if os.geteuid() != 0:
        raise CheckError(f"needs {', '.join(missing)}: run as root, or apt-get install them")
    say(f"!!! INSTALLING Debian packages on this machine: {' '.join(missing)} (apt-get) !!!")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update"], env=env, quiet=True)
    run(["apt-get", "install", "-y", *missing], env=env, quiet=True)


def ensure_compose(cache: Path) -> str:
    """``docker compose`` v2 and ``docker buildx``; else trixie's packages, verified, installed."""
    if not (_works("docker", "compose", "version") and _works("docker", "buildx", "version")):
        if os.geteuid() != 0:
            raise CheckError("needs the docker compose v2 and buildx plugins: run as root")
        say(f"!!! INSTALLING {' '.join(COMPOSE_PACKAGES)} from Debian {COMPOSE_SUITE} !!!")
        say(f"verifying them: {COMPOSE_SUITE} InRelease (gpgv) -> Packages.xz -> .deb SHA-256")
        debs = fetch_verified(COMPOSE_SUITE, COMPOSE_PACKAGES, cache / "debs")
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "install", "-y", *(str(deb) for deb in debs)], env=env, quiet=True)
    version = run(["docker", "compose", "version", "--short"], quiet=True).output.strip()
    if not version.startswith(("2.", "v2.")):
        raise CheckError(f"docker compose {version} is not Compose v2")
    return version


class Engine:
    """``with Engine(log):`` a Docker engine that answers; dockerd is started (and afterwards
    stopped) only when none was running."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Engine:
        if _works("docker", "info"):
            say("using the Docker engine that is already running")
            return self
        if os.geteuid() != 0:
            raise CheckError("no Docker engine answers and dockerd needs root to start")
        say(f"!!! STARTING dockerd (log: {self.log}); it is stopped again at the end !!!")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                ["dockerd"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        until = time.monotonic() + 90
        while not _works("docker", "info"):
            if self.process.poll() is not None or time.monotonic() > until:
                tail = self.log.read_text(errors="replace")[-3000:]
                self._stop()
                raise CheckError(f"dockerd did not start:\n{tail}")
            time.sleep(1)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            say("stopping the dockerd this check started")
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
