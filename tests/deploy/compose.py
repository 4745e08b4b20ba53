"""docker-compose.yml's services as local processes: volumes are folders, hosts are loopback."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
PENDING_SCRIPTS = {"fedseg-admin": "services.admin.main:main"}
"""Console scripts the images install that pyproject.toml does not declare yet."""

_VARIABLE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_]\w*))")
_LISTEN_ANY = "0.0.0.0"


def interpolate(value: Any, variables: Mapping[str, str]) -> Any:
    """Compose's variable substitution: ``$$``, ``$NAME``, ``${NAME}``, ``${NAME:-default}``."""
    if isinstance(value, dict):
        return {k: interpolate(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, variables) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        expression = match["braced"] if match["braced"] is not None else match["named"]
        parts = re.fullmatch(r"(?P<name>[A-Za-z_]\w*)(?:(?P<op>:-|-)(?P<default>.*))?", expression)
        if parts is None:
            raise ValueError(f"unsupported substitution ${{{expression}}} in the compose file")
        current, default = variables.get(parts["name"]), parts["default"] or ""
        if parts["op"] == ":-" and not current:
            return default
        if parts["op"] == "-" and current is None:
            return default
        return current or ""

    return _VARIABLE.sub(substitute, value)


def load(variables: Mapping[str, str]) -> dict[str, Any]:
    with COMPOSE_FILE.open() as handle:
        document: dict[str, Any] = yaml.safe_load(handle)
    return {k: interpolate(v, variables) for k, v in document.items() if not k.startswith("x-")}


@dataclass
class Dockerfile:
    env: dict[str, str] = field(default_factory=dict)
    cmd: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    instructions: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> Dockerfile:
        result = cls()
        text = re.sub(r"\\\n", " ", path.read_text())
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            keyword, _, rest = line.partition(" ")
            result.instructions.append((keyword.upper(), rest.strip()))
            if keyword.upper() == "ENV":
                result.env.update(item.split("=", 1) for item in shlex.split(rest))
            elif keyword.upper() == "CMD":
                result.cmd = json.loads(rest)
            elif keyword.upper() == "VOLUME":
                result.volumes += json.loads(rest)
        return result


@dataclass
class LocalService:
    """One compose service, ready to run here: its argv, environment and what it waits for."""

    name: str
    argv: list[str]
    env: dict[str, str]
    depends_on: dict[str, str]
    healthcheck: list[str] | None
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, env=self.env, cwd=self.log.parent, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip

    def wait(self, timeout: float) -> int:
        assert self.process is not None, f"{self.name} was never started"
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            message = f"{self.name} still running after {timeout} s\n{self.tail()}"
            raise AssertionError(message) from None

    def wait_healthy(self, timeout: float) -> None:
        assert self.healthcheck is not None, f"{self.name} has no healthcheck"
        until = time.monotonic() + timeout
        while time.monotonic() < until:
            assert self.process is not None
            assert self.process.poll() is None, self.tail()
            check = subprocess.run(self.healthcheck, env=self.env, capture_output=True, timeout=30)
            if check.returncode == 0:
                return
            time.sleep(0.5)
        raise AssertionError(f"{self.name} not healthy after {timeout} s\n{self.tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def tail(self) -> str:
        return f"--- {self.name} ---\n{self.log.read_text()[-3000:]}"


def console_scripts(bin_dir: Path) -> Path:
    """A folder of wrappers for the project's console scripts, as the images install them."""
    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, target in {**PENDING_SCRIPTS, **declared}.items():
        module, function = target.split(":")
        code = f"import sys; from {module} import {function}; sys.exit({function}())"
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -c "{code}" "$@"\n')
        script.chmod(0o755)
    return bin_dir


def local_services(compose: dict[str, Any], root: Path, bin_dir: Path) -> dict[str, LocalService]:
    """Every service that `docker compose up` starts (no profile, replicas > 0), localized."""
    services = compose["services"]
    hosts = set(services)
    base = {k: v for k, v in os.environ.items() if not k.startswith("FEDSEG_")}
    base["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    result = {}
    for name, spec in services.items():
        if spec.get("profiles") or int(spec.get("deploy", {}).get("replicas", 1)) == 0:
            continue
        image = Dockerfile.read(REPO_ROOT / spec["build"]["dockerfile"])
        mounts = _mounts(name, spec, image, root)

        def local(text: str, mounts: dict[str, Path] = mounts) -> str:
            return _localize(text, mounts, hosts)

        env = {k: local(str(v)) for k, v in {**image.env, **spec.get("environment", {})}.items()}
        command = spec.get("command", image.cmd)
        argv = shlex.split(command) if isinstance(command, str) else list(command)
        test = spec.get("healthcheck", {}).get("test")
        if test is not None and test[0] == "CMD-SHELL":
            test = ["sh", "-c", test[1]]
        elif test is not None:
            test = test[1:]
        (root / "logs").mkdir(parents=True, exist_ok=True)
        result[name] = LocalService(
            name=name,
            argv=[local(a) for a in argv],
            env={**base, "HOME": str(root / "home" / name), **env},
            depends_on={d: c["condition"] for d, c in spec.get("depends_on", {}).items()},
            healthcheck=None if test is None else [local(a) for a in test],
            log=root / "logs" / f"{name}.log",
        )
        (root / "home" / name).mkdir(parents=True, exist_ok=True)
    return result


def start_order(services: dict[str, LocalService]) -> list[str]:
    order: list[str] = []

    def visit(name: str) -> None:
        if name not in order:
            for dependency in services[name].depends_on:
                visit(dependency)
            order.append(name)

    for name in services:
        visit(name)
    return order


def _mounts(name: str, spec: dict[str, Any], image: Dockerfile, root: Path) -> dict[str, Path]:
    mounts = {path: root / "anonymous" / name / path.strip("/") for path in image.volumes}
    for entry in spec.get("volumes", []):
        source, target = entry.split(":")[:2]
        if source.startswith((".", "/")):
            mounts[target] = (COMPOSE_FILE.parent / source).resolve()
        else:
            mounts[target] = root / "volumes" / source
    for folder in mounts.values():
        folder.mkdir(parents=True, exist_ok=True)
    return mounts


def _localize(text: str, mounts: dict[str, Path], hosts: set[str]) -> str:
    """Container paths to their folders here, service host names (and 0.0.0.0) to loopback."""
    if text == _LISTEN_ANY:
        return "127.0.0.1"
    for target in sorted(mounts, key=len, reverse=True):
        pattern = rf"(?<![\w./-]){re.escape(target)}(?=[/\s'\":]|$)"
        text = re.sub(pattern, lambda _m, t=target: str(mounts[t]), text)
    for host in hosts:
        text = re.sub(rf"(?<=://){re.escape(host)}(?=[:/]|$)", "127.0.0.1", text)
    return text
