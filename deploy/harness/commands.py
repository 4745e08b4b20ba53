"""Running the harness's commands: each one echoed, timed, and fatal when it fails."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


class CheckError(RuntimeError):
    """The compose check found something wrong; the message says what."""


@dataclass(frozen=True)
class Result:
    """What one command did: its exit status, its output (stdout and stderr), its seconds."""

    returncode: int
    output: str
    seconds: float


def say(message: str) -> None:
    print(f"compose-check: {message}", file=sys.stderr, flush=True)


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    quiet: bool = False,
    timeout: float = 1800,
    cwd: Path | None = None,
) -> Result:
    """``argv`` with ``env`` added to this environment; its output kept, and shown as it comes."""
    say(f"$ {shlex.join(argv)}")
    started = time.monotonic()
    lines: list[str] = []
    with subprocess.Popen(
        list(argv),
        env={**os.environ, **(env or {})},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
    ) as process:
        killer = threading.Timer(timeout, process.kill)
        killer.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line)
                if not quiet:
                    sys.stderr.write(line)
        finally:
            killer.cancel()
        returncode = process.wait()
    result = Result(returncode, "".join(lines), time.monotonic() - started)
    if check and returncode != 0:
        if quiet:
            sys.stderr.write(result.output[-4000:])
        raise CheckError(f"exit status {returncode}: {shlex.join(argv)}")
    return result
