"""The project's two images from its own Dockerfiles, only the base image swapped."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from deploy.harness.commands import CheckError, run

BASE_ARGS = {"Dockerfile.server": "PYTHON_IMAGE", "Dockerfile.node": "PYTORCH_IMAGE"}
"""The build argument that names each Dockerfile's base image."""


@dataclass(frozen=True)
class ProjectImage:
    tag: str
    dockerfile: str


def dockerfile_arg(dockerfile: Path, name: str) -> str:
    """The default of ``ARG name=...`` in ``dockerfile``."""
    found = re.search(rf"^ARG {re.escape(name)}=\"?([^\"\n]*)\"?$", dockerfile.read_text(), re.M)
    if found is None:
        raise CheckError(f"{dockerfile.name} has no ARG {name}=...")
    return found[1]


def compose_images(compose_env: dict[str, str]) -> dict[str, ProjectImage]:
    """The images the compose file builds, by service, as ``docker compose config`` sees them."""
    config = json.loads(run(["docker", "compose", "config", "--format", "json"],
                            env=compose_env, quiet=True).output)  # fmt: skip
    found = {}
    for name, service in config["services"].items():
        if "build" in service:
            dockerfile = Path(service["build"].get("dockerfile", "Dockerfile")).name
            found[name] = ProjectImage(service["image"], dockerfile)
    return found


def ca_bundle() -> Path:
    """This machine's CA bundle, as pip here uses it (its ``cert`` setting)."""
    bundle = Path(os.environ.get("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt"))
    if not bundle.is_file():
        raise CheckError(f"no CA bundle at {bundle} (set PIP_CERT)")
    return bundle


def build(root: Path, image: ProjectImage, base: str, args: dict[str, str]) -> None:
    """``docker build`` as deploy/README.md documents it: the base by build argument and the
    extra CA certificates as the ``extra-ca`` secret."""
    argv = ["docker", "build", "--network=host", "-f", str(root / image.dockerfile),
            "--build-arg", f"{BASE_ARGS[image.dockerfile]}={base}",
            "--secret", f"id=extra-ca,src={ca_bundle()}", "-t", image.tag]  # fmt: skip
    for name, value in args.items():
        argv += ["--build-arg", f"{name}={value}"]
    run([*argv, str(root)])


def check_no_ca_left(tag: str) -> None:
    """The extra CA was used during the build only: in no file of the image, not in its history."""
    history = run(
        ["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", tag], quiet=True
    )
    if "BEGIN CERTIFICATE" in history.output:
        raise CheckError(f"{tag}: a certificate is in the image history")
    left = "test ! -e /tmp/pip-ca.pem && test ! -e /run/secrets/extra-ca"
    run(["docker", "run", "--rm", "--network=none", "--entrypoint", "sh", tag, "-c", left],
        quiet=True)  # fmt: skip
