"""The compose federation run by the READMEs' own commands, checked, then torn down."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from deploy.harness.commands import CheckError, Result, run, say

SMALL = {
    "FEDSEG_ROUNDS": "2",
    "FEDSEG_VOLUME": "32",
    "FEDSEG_CROP": "32",
    "FEDSEG_STEPS": "2",
    "FEDSEG_SITE1_CASES": "3",
    "FEDSEG_SITE2_CASES": "2",
    "FEDSEG_SITE3_CASES": "3",
    "FEDSEG_NODE_THREADS": "1",
    "FEDSEG_TIMEOUT": "900",
}
"""What a user would export for a quick look (deploy/README.md's knobs)."""
NODES = 3
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def check_round_table(logs: str, rounds: int, nodes: int = NODES) -> None:
    """The coordinator's output ends with the round table of a completed run: every training
    round closed with every node's update."""
    logs = _ANSI.sub("", logs)
    if not re.search(r"^\s*round\s+state\s+nodes\s+samples", logs, re.M):
        raise CheckError(f"no round table in the coordinator's output:\n{logs[-3000:]}")
    for number in range(1, rounds + 1):
        if not re.search(rf"^\s*{number}\s+closed\s+{nodes}/{nodes}\s", logs, re.M):
            raise CheckError(f"round {number} is not closed with {nodes}/{nodes} updates")
    last = logs.rstrip().splitlines()[-1] if logs.strip() else ""
    if not re.fullmatch(r"run \d+: completed", last.strip()):
        raise CheckError(f"the coordinator's last line is {last!r}, not 'run N: completed'")


@dataclass
class Compose:
    """The compose project the check owns: its own name, run from a scratch folder (so the
    README's ``./admin-kit`` lands there), with the project's virtualenv first on PATH."""

    compose_file: Path
    workdir: Path
    name: str = "fedseg-compose-check"
    settings: dict[str, str] = field(default_factory=lambda: dict(SMALL))

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        venv = Path(sys.executable).parent
        path = f"{venv}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        return {
            "COMPOSE_FILE": str(self.compose_file),
            "COMPOSE_PROJECT_NAME": self.name,
            "PATH": path,
            **self.settings,
            **(extra or {}),
        }

    def shell(
        self, lines: list[str], *, check: bool = True, extra: Mapping[str, str] | None = None
    ) -> Result:
        """``lines`` as one ``sh -e`` script, exactly as a user would paste them."""
        return run(["sh", "-ec", "\n".join(lines)], env=self.env(extra), check=check,
                   cwd=self.workdir, timeout=1800)  # fmt: skip

    def exit_code(self, service: str) -> int:
        found = self.shell([f"docker compose ps -a --format json {service}"])
        states = [json.loads(line) for line in found.output.splitlines() if line.startswith("{")]
        if len(states) != 1:
            raise CheckError(f"expected one {service} container, found {found.output!r}")
        code: int = states[0]["ExitCode"]
        return code

    def restarts(self, service: str) -> int:
        """How often the engine restarted ``service`` (``restart: on-failure``)."""
        found = self.shell(
            [f"docker inspect --format '{{{{.RestartCount}}}}' $(docker compose ps -q {service})"]
        )
        return int(found.output.strip().splitlines()[-1])

    def completed_run(self, lines: list[str], extra: Mapping[str, str] | None = None) -> float:
        """The README's command to its end: exit 0 and the round table; its seconds."""
        since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        result = self.shell(lines, extra=extra)
        logs = self.shell(
            [f"docker compose --ansi never logs --no-log-prefix --since {since} coordinator"]
        )
        check_round_table(logs.output, int(self.settings["FEDSEG_ROUNDS"]))
        say(f"run completed: {result.seconds:.0f} s from `up` to the completed run")
        return result.seconds

    def container_env(self, service: str) -> dict[str, str]:
        template = "'{{range .Config.Env}}{{println .}}{{end}}'"
        found = self.shell(
            [f"docker inspect --format {template} $(docker compose ps -q {service})"]
        )
        pairs = (line.split("=", 1) for line in found.output.splitlines() if "=" in line)
        return dict(pairs)

    def postgres_outage(self, command: str) -> tuple[float, int]:
        """PostgreSQL down while the aggregator starts: the aggregator exits and is restarted
        until the database answers, and the README's command (a later `up` with the same
        password) still runs to the end. Its seconds, and the aggregator's restarts."""
        kept = {
            "FEDSEG_DATABASE_URL": self.container_env("aggregator")["FEDSEG_DATABASE_URL"],
            "FEDSEG_POSTGRES_PASSWORD": self.container_env("postgres")["POSTGRES_PASSWORD"],
        }
        before = self.restarts("aggregator")
        self.shell(["docker compose --profile postgres stop postgres",
                    "docker compose restart aggregator"], extra=kept)  # fmt: skip
        until = time.monotonic() + 120
        while self.restarts("aggregator") == before:
            if time.monotonic() > until:
                raise CheckError("the aggregator did not exit without PostgreSQL")
            time.sleep(1)
        seconds = self.completed_run([command], kept)
        return seconds, self.restarts("aggregator") - before

    def status(self, lines: list[str]) -> None:
        """The status queries as deploy/README.md prints them (admin kit, exec, curl)."""
        output = _ANSI.sub("", self.shell(lines).output)
        rounds = int(self.settings["FEDSEG_ROUNDS"])
        if not re.search(r'"state":\s*"closed"', output):
            raise CheckError("curl's answer shows no closed round")
        if len(re.findall(r"^\s*round\s+state\s+nodes", output, re.M)) < 2:
            raise CheckError("`fedseg-admin rounds` (exec and admin kit) printed no round table")
        for number in range(1, rounds + 1):
            if not re.search(rf"^\s*{number}\s+closed\s", output, re.M):
                raise CheckError(f"round {number} is missing from the status output")

    def failing_run(self, lines: list[str], **settings: str) -> str:
        """The README's command on a run the aggregator refuses: it must exit non-zero."""
        result = self.shell(lines, check=False, extra=settings)
        coordinator = self.exit_code("coordinator")
        if result.returncode == 0 or coordinator == 0:
            raise CheckError(
                f"a refused run exited {result.returncode} (coordinator {coordinator}): "
                "the README's command must fail when the run fails"
            )
        logs = self.shell(["docker compose --ansi never logs --no-log-prefix coordinator"])
        reason = _ANSI.sub("", logs.output).strip().splitlines()[-1:] or ["(no output)"]
        say(f"refused run: the command exited {result.returncode}, the coordinator {coordinator}")
        return f"the command exited {result.returncode}: {reason[0]}"

    def down(self) -> None:
        self.shell(["docker compose --profile postgres --profile gpu down -v --remove-orphans"],
                   check=False)  # fmt: skip
