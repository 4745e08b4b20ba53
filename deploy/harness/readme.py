"""The compose commands as the READMEs print them: the check runs exactly these lines."""

from __future__ import annotations

import re
from pathlib import Path

from deploy.harness.commands import CheckError

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"
DEPLOY_README = REPO_ROOT / "deploy" / "README.md"

_FENCE = re.compile(r"^```(?:sh|bash|console)?\n(.*?)^```$", re.M | re.S)
_COMMENT = re.compile(r"(?:^|\s+)#.*$")


def code_blocks(markdown: str) -> list[list[str]]:
    """Every fenced shell block as logical lines: continuations joined, comments dropped."""
    blocks = []
    for match in _FENCE.finditer(markdown):
        text = match[1].replace("\\\n", " ")
        lines = [re.sub(r"\s+", " ", _COMMENT.sub("", line)).strip() for line in text.split("\n")]
        blocks.append([line for line in lines if line])
    return blocks


def block_with(markdown: str, prefix: str) -> list[str]:
    """The first block with a line that starts with ``prefix``."""
    for block in code_blocks(markdown):
        if any(line.startswith(prefix) for line in block):
            return block
    raise CheckError(f"no shell block with a line starting {prefix!r}")


def line_with(markdown: str, prefix: str) -> str:
    return next(line for line in block_with(markdown, prefix) if line.startswith(prefix))


def run_command(readme: str) -> str:
    """README.md's command that runs the compose federation to its end."""
    return line_with(readme, "docker compose up ")


def postgres_block(deploy_readme: str) -> list[str]:
    """deploy/README.md's PostgreSQL lines: the exports, then the same command on the profile."""
    return block_with(deploy_readme, "docker compose --profile postgres up ")


def status_block(deploy_readme: str) -> list[str]:
    """deploy/README.md's status queries from the host (the block after **Status.**)."""
    after = deploy_readme.split("**Status.**", 1)
    if len(after) != 2:
        raise CheckError("deploy/README.md has no **Status.** paragraph")
    return code_blocks(after[1])[0]


def with_profile(command: str, profile: str) -> str:
    """``command`` with ``--profile profile`` in each ``docker compose up``."""
    return command.replace("docker compose up ", f"docker compose --profile {profile} up ")
