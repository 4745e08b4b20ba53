"""Stand-in base images, built once and cached: bookworm rootfs, Python, CPU torch, PostgreSQL."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from deploy.harness.commands import CheckError, run, say
from deploy.harness.debian import MIRROR

IMAGES = Path(__file__).resolve().parent / "images"
LABEL = "org.fedseg.harness.recipe"
"""Every stand-in carries the digest of its recipe: a changed recipe is rebuilt."""
DEBIAN = "fedseg-harness/debian:bookworm"
PYTHON = "fedseg-harness/python:3.11-bookworm"
PYTORCH = "fedseg-harness/pytorch:cpu"


def recipe_digest(*parts: str | Path) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.read_bytes() if isinstance(part, Path) else part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def image_label(tag: str) -> str | None:
    """The recipe label of a local image; None when there is no such image."""
    found = run(
        ["docker", "image", "inspect", "--format", f'{{{{index .Config.Labels "{LABEL}"}}}}', tag],
        check=False,
        quiet=True,
    )
    if found.returncode != 0:
        return None
    return found.output.strip().replace("<no value>", "")


def _cached(tag: str, digest: str) -> bool:
    if image_label(tag) == digest:
        say(f"{tag}: cached stand-in (recipe {digest})")
        return True
    return False


def debian(cache: Path) -> str:
    """``debootstrap --variant=minbase bookworm``, imported as an image."""
    digest = recipe_digest("debootstrap --variant=minbase bookworm", MIRROR)
    if _cached(DEBIAN, digest):
        return DEBIAN
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as folder:
        rootfs = Path(folder) / "rootfs"
        run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), MIRROR], quiet=True)
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(rootfs / leftover, ignore_errors=True)
            (rootfs / leftover).mkdir(parents=True)
        tarball = Path(folder) / "rootfs.tar"
        run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tarball), "."], quiet=True)
        run(["docker", "import", "--change", f"LABEL {LABEL}={digest}",
             "--change", 'CMD ["bash"]', str(tarball), DEBIAN], quiet=True)  # fmt: skip
    return DEBIAN


def _build(tag: str, dockerfile: str, args: dict[str, str], digest: str) -> str:
    if _cached(tag, digest):
        return tag
    argv = ["docker", "build", "--network=host", "--label", f"{LABEL}={digest}",
            "-f", str(IMAGES / dockerfile), "-t", tag]  # fmt: skip
    for name, value in args.items():
        argv += ["--build-arg", f"{name}={value}"]
    run([*argv, str(IMAGES)])
    return tag


def python(base: str) -> str:
    """Stand-in for python:3.11-slim-bookworm: Debian's Python 3.11 in a venv first on PATH."""
    digest = recipe_digest(image_label(base) or base, IMAGES / "python.Dockerfile")
    return _build(PYTHON, "python.Dockerfile", {"DEBIAN_IMAGE": base}, digest)


def pytorch(python_image: str, torch_spec: str, index_url: str) -> str:
    """Stand-in for the pytorch/pytorch runtime: the same Python plus the CPU torch wheel."""
    recipe = IMAGES / "pytorch.Dockerfile"
    digest = recipe_digest(image_label(python_image) or python_image, recipe, torch_spec)
    args = {"PYTHON_IMAGE": python_image, "TORCH_SPEC": torch_spec, "TORCH_INDEX_URL": index_url}
    return _build(PYTORCH, "pytorch.Dockerfile", args, digest)


def postgres(base: str, tag: str) -> str:
    """Stand-in for ``tag`` (the compose file's PostgreSQL image), unless a real one is here."""
    found = image_label(tag)
    if found == "":
        say(f"{tag}: an image not built by this harness is here; the check uses it")
        return tag
    recipe = [IMAGES / "postgres.Dockerfile", IMAGES / "postgres-entrypoint.sh"]
    digest = recipe_digest(image_label(base) or base, *recipe)
    if found is not None and found != digest:
        say(f"{tag}: the harness's stand-in is out of date; rebuilding")
    return _build(tag, "postgres.Dockerfile", {"DEBIAN_IMAGE": base}, digest)


def size_mb(tag: str) -> float:
    found = run(["docker", "image", "inspect", "--format", "{{.Size}}", tag], quiet=True)
    try:
        return int(found.output.strip()) / 1e6
    except ValueError:
        raise CheckError(f"cannot read the size of {tag}: {found.output!r}") from None
