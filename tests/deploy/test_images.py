"""Dockerfile.server and Dockerfile.node, checked without a Docker engine."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.deploy.compose import REPO_ROOT, Dockerfile

SERVER = Dockerfile.read(REPO_ROOT / "Dockerfile.server")
NODE = Dockerfile.read(REPO_ROOT / "Dockerfile.node")
TORCH_SPEC = re.search(r"^TORCH_SPEC \?= (\S+)$", (REPO_ROOT / "Makefile").read_text(), re.M)


def _args(image: Dockerfile) -> dict[str, str]:
    pairs = (rest.split("=", 1) for kind, rest in image.instructions if kind == "ARG")
    return {name: value.strip('"') for name, value in pairs}


def _runs(image: Dockerfile) -> str:
    return "\n".join(rest for kind, rest in image.instructions if kind == "RUN")


def _requirement_names() -> set[str]:
    lines = (REPO_ROOT / "requirements.txt").read_text().splitlines()
    return {line.split("==")[0].lower() for line in lines if "==" in line}


def test_both_images_run_as_an_unprivileged_user() -> None:
    for image in (SERVER, NODE):
        users = [rest for kind, rest in image.instructions if kind == "USER"]
        assert users == ["fedseg:fedseg"]
        assert "--uid 10001" in _runs(image)
        assert image.instructions[-1][0] == "CMD"


def test_server_image_installs_cpu_torch_first_then_the_pinned_requirements() -> None:
    assert TORCH_SPEC is not None
    args = _args(SERVER)
    assert args["PYTHON_IMAGE"].startswith("python:3.11-slim")
    assert (args["TORCH_SPEC"], args["TORCH_INDEX_URL"]) == (
        TORCH_SPEC[1],
        "https://download.pytorch.org/whl/cpu",
    )
    runs = _runs(SERVER)
    torch_at = runs.index('pip install --no-deps --index-url "${TORCH_INDEX_URL}" "${TORCH_SPEC}"')
    assert torch_at < runs.index("pip install -r requirements-server.txt")
    assert runs.index("requirements-server.txt") < runs.index("pip install --no-deps .")
    assert SERVER.cmd == ["fedseg-aggregator"]
    assert SERVER.volumes == ["/var/lib/fedseg"]
    healthcheck = [rest for kind, rest in SERVER.instructions if kind == "HEALTHCHECK"]
    assert len(healthcheck) == 1
    assert healthcheck[0].endswith('CMD ["fedseg-admin", "health"]')


def test_server_image_leaves_out_only_packages_the_aggregator_never_imports(
    tmp_path: Path,
) -> None:
    node_only = _args(SERVER)["NODE_ONLY"].split()
    assert {name.lower() for name in node_only} <= _requirement_names()
    # The aggregator, the admin CLI and the PKI tool start and make a run's first model with
    # those packages unimportable, as in the image.
    script = textwrap.dedent(
        f"""
        import importlib.abc, sys
        class Missing(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {node_only!r}:
                    raise ImportError(f"{{name}} is not in the server image")
        sys.meta_path.insert(0, Missing())
        import services.admin.main, services.aggregator.server, shared.pki_cli
        from services.aggregator.core.blobs import BlobStore
        from services.aggregator.core.db import make_engine
        from services.aggregator.federation import Federation
        from shared.identity import Identity, Role
        from shared.model import ModelConfig
        from shared.schemas import RunCreate
        from pathlib import Path
        root = Path(sys.argv[1])
        federation = Federation(make_engine(f"sqlite:///{{root}}/a.db"), BlobStore(root / "b"))
        federation.migrate()
        body = RunCreate(rounds=1, expected_nodes=["site-1"], model=ModelConfig(init_filters=8))
        print(federation.create_run(Identity("admin", Role.ADMIN, 1), body).state)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (0, "running\n"), result.stderr


def test_node_image_keeps_the_cuda_torch_of_its_base_and_installs_the_rest() -> None:
    assert TORCH_SPEC is not None
    base = _args(NODE)["PYTORCH_IMAGE"]
    version = TORCH_SPEC[1].removeprefix("torch==")
    assert re.fullmatch(rf"pytorch/pytorch:{re.escape(version)}-cuda[\d.]+-cudnn\d+-runtime", base)
    runs = _runs(NODE)
    assert "> torch-constraint.txt" in runs
    assert runs.index("pip install -c torch-constraint.txt -r requirements.txt") < runs.index(
        "pip install --no-deps ."
    )
    assert "torch" not in _requirement_names()
    assert NODE.env["FEDSEG_DEVICE"] == "auto"
    assert (NODE.env["FEDSEG_DATA_DIR"], NODE.env["FEDSEG_STATE_DIR"]) == (
        "/data",
        "/var/lib/fedseg",
    )
    assert NODE.volumes == ["/var/lib/fedseg"]  # the scans are the hospital's mount, read-only
    assert NODE.cmd == ["fedseg-node"]


def test_build_context_holds_the_sources_and_no_key_material() -> None:
    lines = [
        line
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0] == "*"
    included = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert included == {"pyproject.toml", "README.md", "requirements.txt", "services", "shared"}
    for pattern in ("**/*.pem", "**/*.key", "**/*.csr", "**/*.crl", "**/*.env"):
        assert pattern in lines
    copied = [
        rest for image in (SERVER, NODE) for kind, rest in image.instructions if kind == "COPY"
    ]
    sources = {source for rest in copied for source in rest.split()[:-1]}
    assert sources <= included
