"""deploy/README.md and deploy/examples stay in step with the settings and the compose file."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic_settings import BaseSettings

from services.admin.config import AdminSettings
from services.aggregator.core.config import AggregatorSettings
from services.node.config import NodeSettings
from shared.schemas import Mechanism
from tests.deploy.compose import COMPOSE_FILE, REPO_ROOT

README = (REPO_ROOT / "deploy" / "README.md").read_text()
CLASSES: dict[str, tuple[type[BaseSettings], str]] = {
    "aggregator": (AggregatorSettings, "FEDSEG_"),
    "node": (NodeSettings, "FEDSEG_"),
    "admin CLI": (AdminSettings, "FEDSEG_ADMIN_"),
}


def test_the_settings_table_lists_every_setting_of_every_service() -> None:
    rows = re.findall(r"^\| (aggregator|node|admin CLI) \| `(FEDSEG_\w+)` \|", README, re.M)
    documented = {(service, variable) for service, variable in rows}
    assert len(rows) == len(documented)
    expected = {
        (service, f"{prefix}{name.upper()}")
        for service, (cls, prefix) in CLASSES.items()
        for name in cls.model_fields
    }
    assert documented == expected


def test_the_knobs_table_lists_every_variable_the_compose_file_reads() -> None:
    used = set(re.findall(r"\$\{(FEDSEG_\w+)", COMPOSE_FILE.read_text()))
    knobs = set()
    for row in re.findall(r"^\| (`FEDSEG_[^|]+) \| [^|]+ \| [^|]+ \|$", README, re.M):
        names = re.findall(r"`(FEDSEG_\w+)`", row)
        knobs |= set(names)
        knobs |= {f"FEDSEG{s}CASES" for s in re.findall(r"`(_SITE\d_)`", row)}
    assert used - {"FEDSEG_POSTGRES_PASSWORD"} <= knobs
    assert "FEDSEG_POSTGRES_PASSWORD" in README


def test_the_example_node_env_holds_valid_node_settings(tmp_path: Path, pki_dir: Path) -> None:
    example = REPO_ROOT / "deploy" / "examples" / "node.env"
    lines = [line for line in example.read_text().splitlines() if line and line[0] != "#"]
    names = {line.split("=", 1)[0] for line in lines}
    assert names <= {f"FEDSEG_{name.upper()}" for name in NodeSettings.model_fields}
    settings = NodeSettings(
        _env_file=example,  # type: ignore[call-arg]
        tls_cert=pki_dir / "site-1.pem",
        tls_key=pki_dir / "site-1-key.pem",
        tls_ca=pki_dir / "ca.pem",
        data_dir=tmp_path,
    )
    assert settings.aggregator_url == "https://fedseg.consortium.example:8443"
    assert settings.privacy_policy is not None
    assert settings.privacy_policy.mechanism == Mechanism.SVT
    assert settings.privacy_budget_epsilon == 500000
