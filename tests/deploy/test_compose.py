"""docker-compose.yml: its shape, and `docker compose up` run as local processes to the end."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from services.demo.processes import Kit, free_port
from shared.schemas import RoundView, RunView
from tests.deploy.compose import (
    COMPOSE_FILE,
    PENDING_SCRIPTS,
    REPO_ROOT,
    Dockerfile,
    console_scripts,
    load,
    local_services,
    start_order,
)

NODES = ["node-1", "node-2", "node-3"]
SMALL = {
    "FEDSEG_ROUNDS": "1",
    "FEDSEG_VOLUME": "24",
    "FEDSEG_CROP": "24",
    "FEDSEG_STEPS": "1",
    "FEDSEG_SITE1_CASES": "3",
    "FEDSEG_SITE2_CASES": "2",
    "FEDSEG_SITE3_CASES": "3",
    "FEDSEG_NODE_THREADS": "1",
    "FEDSEG_LOG_LEVEL": "warning",
    "FEDSEG_TIMEOUT": "150",
}
"""What a user would export for a quick look; the test sets nothing the compose file lacks."""


@pytest.mark.slow
def test_compose_up_runs_a_federation_to_completion(tmp_path: Path) -> None:
    port = free_port()
    services = local_services(
        load({**SMALL, "FEDSEG_PORT": str(port)}), tmp_path, console_scripts(tmp_path / "bin")
    )
    assert sorted(services) == ["aggregator", "coordinator", *NODES, "pki"]
    try:
        for name in start_order(services):
            for dependency, condition in services[name].depends_on.items():
                if condition == "service_completed_successfully":
                    assert services[dependency].wait(60) == 0, services[dependency].tail()
                elif condition == "service_healthy":
                    services[dependency].wait_healthy(60)
            services[name].start()
        exits = {name: services[name].wait(150) for name in ["coordinator", *NODES]}
        logs = "\n".join(service.tail() for service in services.values())
        assert exits == dict.fromkeys(["coordinator", *NODES], 0), logs
        admin = tmp_path / "volumes" / "kits" / "admin"
        kit = Kit(admin / "ca.pem", admin / "admin.pem", admin / "admin-key.pem")
        with kit.http(f"https://127.0.0.1:{port}") as http:
            runs = [RunView.model_validate(r) for r in http.get("/api/v1/runs").json()]
            rounds = [RoundView.model_validate(r) for r in http.get("/api/v1/rounds").json()]
    finally:
        for service in services.values():
            service.stop()
    assert [(r.name, r.state, r.expected_nodes) for r in runs] == [
        ("compose", "completed", ["site-1", "site-2", "site-3"])
    ]
    assert [(r.round, r.kind, r.state, r.reported_nodes) for r in rounds] == [
        (1, "train", "closed", ["site-1", "site-2", "site-3"]),
        (2, "evaluate", "closed", ["site-1", "site-2", "site-3"]),
    ]
    progress = services["coordinator"].log.read_text()
    assert "run 1 (compose): 1 round over site-1, site-2, site-3" in progress
    assert progress.rstrip().endswith("run 1: completed")
    # Running the PKI job again keeps the CA and every kit (a second `up` changes nothing).
    volumes = tmp_path / "volumes"
    before = {p: p.read_bytes() for p in sorted(volumes.glob("*/**/*.pem"))}
    services["pki"].start()
    assert services["pki"].wait(60) == 0, services["pki"].tail()
    assert {p: p.read_bytes() for p in sorted(volumes.glob("*/**/*.pem"))} == before


def test_compose_services_and_what_each_may_see(tmp_path: Path) -> None:
    compose = load({})
    services = compose["services"]
    default = sorted(name for name, spec in services.items() if not spec.get("profiles"))
    assert default == ["aggregator", "coordinator", *NODES, "pki"]
    mounts = {name: spec.get("volumes", []) for name, spec in services.items()}
    assert [name for name, entries in mounts.items() if any("ca:" in v for v in entries)] == ["pki"]
    assert mounts["pki"] == ["ca:/pki/ca", "kits:/pki/kits"]
    for name in ["aggregator", "coordinator", *NODES]:
        assert "kits:/pki/kits:ro" in mounts[name], name
    for index, name in enumerate(NODES, start=1):
        env = services[name]["environment"]
        assert env["FEDSEG_TLS_CERT"] == f"/pki/kits/site-{index}/site-{index}.pem"
        assert env["FEDSEG_TLS_KEY"] == f"/pki/kits/site-{index}/site-{index}-key.pem"
        assert env["FEDSEG_AGGREGATOR_URL"] == "https://aggregator:8443"
        assert env["FEDSEG_EXIT_WHEN_DONE"] == "true"
        assert f"site-{index}-data:/data" in mounts[name]
    assert [name for name, spec in services.items() if "ports" in spec] == ["aggregator"]
    assert services["aggregator"]["ports"] == ["127.0.0.1:8443:8443"]
    assert services["aggregator"]["healthcheck"]["test"] == ["CMD", "fedseg-admin", "health"]
    assert services["pki"]["network_mode"] == "none"
    for name, spec in services.items():
        assert "user" not in spec, f"{name} must run as its image's unprivileged user"
        assert not spec.get("privileged"), name
    urls = [str(v) for spec in services.values() for v in spec.get("environment", {}).values()]
    assert not [u for u in urls if "http://" in u]


def test_gpu_profile_reserves_nvidia_devices_in_place_of_the_cpu_nodes(tmp_path: Path) -> None:
    services = load({"FEDSEG_CPU_NODES": "0"})["services"]
    for index, name in enumerate(NODES, start=1):
        cpu, gpu = services[name], services[f"{name}-gpu"]
        assert cpu["deploy"] == {"replicas": "0"}
        assert gpu["profiles"] == ["gpu"]
        devices = gpu["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
        assert gpu["environment"] == {**cpu["environment"], "FEDSEG_DEVICE": "cuda"}
        assert (gpu["volumes"], gpu["command"]) == (cpu["volumes"], cpu["command"])
        assert f"--site {index} " in gpu["command"][2]
    started = local_services(load({"FEDSEG_CPU_NODES": "0"}), tmp_path, tmp_path / "bin")
    assert sorted(started) == ["aggregator", "coordinator", "pki"]


def test_postgres_profile_is_reachable_only_by_the_aggregator() -> None:
    url = "postgresql+psycopg://fedseg:secret@postgres:5432/fedseg"
    compose = load({"FEDSEG_DATABASE_URL": url, "FEDSEG_POSTGRES_PASSWORD": "secret"})
    services = compose["services"]
    assert services["postgres"]["profiles"] == ["postgres"]
    assert services["postgres"]["networks"] == ["database"]
    assert compose["networks"]["database"] == {"internal": True}
    on_database = [n for n, s in services.items() if "database" in s.get("networks", [])]
    assert on_database == ["aggregator", "postgres"]
    assert services["aggregator"]["environment"]["FEDSEG_DATABASE_URL"] == url
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "secret"
    assert load({})["services"]["aggregator"]["environment"]["FEDSEG_DATABASE_URL"] == ""


def test_every_program_the_compose_file_runs_is_a_console_script_of_the_project() -> None:
    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    services = load({})["services"].values()
    words = [
        w
        for s in services
        for w in [*s.get("command", []), *s.get("healthcheck", {}).get("test", [])]
    ]
    server = Dockerfile.read(REPO_ROOT / "Dockerfile.server").instructions
    text = " ".join([*words, *(rest for kind, rest in server if kind != "ARG")])
    used = set(re.findall(r"(?<![\w-])fedseg-[a-z]+(?![\w:-])", text))
    assert used == {
        "fedseg-admin",
        "fedseg-aggregator",
        "fedseg-node",
        "fedseg-pki",
        "fedseg-synth",
    }
    assert set(PENDING_SCRIPTS) <= used
    assert used <= set(declared), (
        f"pyproject.toml must declare {sorted(used - set(declared))} under [project.scripts]"
    )


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_docker_compose_accepts_the_file() -> None:
    for profiles in ([], ["--profile", "gpu", "--profile", "postgres"]):
        result = subprocess.run(
            ["docker-compose", "-f", str(COMPOSE_FILE), *profiles, "config", "--quiet"],
            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
        )  # fmt: skip
        assert (result.returncode, result.stderr) == (0, "")
