"""`make compose-check`: the images built and the compose federation run on a real engine."""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from pathlib import Path

from deploy.harness import bases, engine, readme
from deploy.harness.commands import CheckError, run, say
from deploy.harness.federation import Compose
from deploy.harness.project_images import (
    build,
    ca_bundle,
    check_no_ca_left,
    compose_images,
    dockerfile_arg,
)
from deploy.harness.wheels import LocalIndex, download_torch

ROOT = readme.REPO_ROOT
CACHE = Path(os.environ.get("FEDSEG_HARNESS_CACHE", Path.home() / ".cache" / "fedseg-harness"))
POSTGRES_IMAGE = "postgres"


def _check() -> list[str]:
    """Everything, in order; the lines of the summary."""
    engine.ensure_apt_packages()
    summary: list[str] = []
    with engine.Engine(CACHE / "dockerd.log"):
        version = engine.ensure_compose(CACHE)
        summary.append(f"Docker Compose {version}")
        volumes = _volumes()
        with tempfile.TemporaryDirectory(prefix="compose-check-") as folder:
            compose = Compose(ROOT / "docker-compose.yml", Path(folder))
            try:
                summary += _images(compose)
                summary += _federations(compose)
            finally:
                compose.down()
                _prune(compose, volumes)
    return summary


def _images(compose: Compose) -> list[str]:
    torch_spec = dockerfile_arg(ROOT / "Dockerfile.server", "TORCH_SPEC")
    debian = bases.debian(CACHE)
    python = bases.python(debian)
    project = compose_images(compose.env())
    postgres_tag = _postgres_tag(compose)
    with LocalIndex(download_torch(CACHE, torch_spec, ROOT / "requirements.txt")) as index:
        pytorch = bases.pytorch(python, torch_spec, index.url)
        postgres = bases.postgres(debian, postgres_tag)
        stand_ins = {"Dockerfile.server": python, "Dockerfile.node": pytorch}
        say(f"extra CA certificates for pip in the builds: {ca_bundle()} (secret extra-ca)")
        for image in {image.tag: image for image in project.values()}.values():
            args = {"TORCH_INDEX_URL": index.url} if image.dockerfile == "Dockerfile.server" else {}
            build(ROOT, image, stand_ins[image.dockerfile], args)
            check_no_ca_left(image.tag)
    tags = [*sorted({image.tag for image in project.values()}), postgres, python, pytorch, debian]
    return [f"image {tag}: {bases.size_mb(tag):.0f} MB" for tag in tags]


def _postgres_tag(compose: Compose) -> str:
    found = compose.shell(["docker compose --profile postgres config --images"], check=True)
    tags = [line for line in found.output.split() if line.startswith(f"{POSTGRES_IMAGE}:")]
    if len(tags) != 1:
        raise CheckError(f"expected one postgres image in the compose file, got {tags}")
    return tags[0]


def _federations(compose: Compose) -> list[str]:
    top, deploy = readme.README.read_text(), readme.DEPLOY_README.read_text()
    command = readme.run_command(top)
    status = readme.status_block(deploy)
    say(f"README's command: {command}")
    sqlite = compose.completed_run([command])
    compose.status(status)
    refused = compose.failing_run([command], FEDSEG_PRIVACY="dpsgd")
    compose.down()
    # The README's PostgreSQL lines make the password; nothing here names one.
    postgres = compose.completed_run(readme.postgres_block(deploy))
    compose.status(status)
    outage, restarts = compose.postgres_outage(readme.with_profile(command, "postgres"))
    return [
        f"README command: {command}",
        f"sqlite profile: {sqlite:.0f} s from up to the completed run",
        f"postgres profile: {postgres:.0f} s from up to the completed run",
        f"postgres profile, PostgreSQL down at first: {outage:.0f} s to the completed run, "
        f"the aggregator restarted {restarts} times meanwhile",
        f"refused run (FEDSEG_PRIVACY=dpsgd): {refused}",
    ]


def _volumes() -> set[str]:
    return set(run(["docker", "volume", "ls", "-q"], quiet=True).output.split())


def _prune(compose: Compose, volumes_before: set[str]) -> None:
    """What the check built goes; the stand-in bases stay cached for the next run."""
    # A container that compose re-creates (the coordinator of the refused run) leaves the
    # anonymous volume of the image's VOLUME behind, which `down -v` does not see.
    for volume in sorted(_volumes() - volumes_before):
        if re.fullmatch(r"[0-9a-f]{64}", volume):
            run(["docker", "volume", "rm", volume], check=False, quiet=True)
    for image in {image.tag for image in compose_images(compose.env()).values()}:
        run(["docker", "image", "rm", "--force", image], check=False, quiet=True)
    run(["docker", "image", "prune", "--force"], check=False, quiet=True)
    run(["docker", "builder", "prune", "--force", "--filter", "until=168h"], check=False,
        quiet=True)  # fmt: skip


def main() -> int:
    started = time.monotonic()
    try:
        summary = _check()
    except CheckError as failure:
        say(f"FAILED: {failure}")
        return 1
    print("\ncompose-check passed:")
    for line in [*summary, f"total: {time.monotonic() - started:.0f} s"]:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
