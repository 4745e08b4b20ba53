"""Node settings, from FEDSEG_* environment variables; the hospital's kit fills most of them."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.schemas import PrivacyPolicy
from shared.settings import check_tls_files, https_url


class NodeSettings(BaseSettings):
    """What a hospital node needs: where the aggregator is, its kit, its data."""

    model_config = SettingsConfigDict(env_prefix="FEDSEG_", env_file=None, extra="ignore")

    aggregator_url: str
    tls_cert: Path
    tls_key: Path
    tls_ca: Path
    data_dir: Path
    state_dir: Path = Path("var/node")
    device: str = "auto"
    case_cache: bool = True
    """Keep preprocessed cases in state_dir/cases, memory-mapped (see data/cache.py)."""
    data_workers: int | None = Field(default=None, ge=0, le=64)  # training.MAX_WORKERS
    """Threads that build training batches; None: 0 on CPU, up to 4 on CUDA."""
    val_fraction: float = Field(default=0.2, ge=0.0, lt=1.0)
    split_seed: int = Field(default=0, ge=0)
    poll_wait_s: float = Field(default=25.0, gt=0.0, le=300.0)
    max_backoff_s: float = Field(default=30.0, gt=0.0)
    request_timeout_s: float = Field(default=120.0, gt=0.0)
    privacy_budget_epsilon: float | None = Field(default=None, gt=0.0)
    """Refuse any release that would take the cumulative epsilon past this (all runs)."""
    privacy_budget_delta: float = Field(default=1e-5, gt=0.0, lt=1.0)
    privacy_policy: PrivacyPolicy | None = None
    """A stricter local policy (JSON) that the aggregator's run policy cannot loosen."""
    announce_case_counts: bool = False
    """Tell the aggregator how many training and validation cases this node has; off by
    default, since a count is a number about patients that no mechanism protects."""
    exit_when_done: bool = False
    """Exit once the newest run has ended (for demos and tests); hospitals keep polling."""
    log_level: str = "info"

    @field_validator("aggregator_url")
    @classmethod
    def _https_only(cls, value: str) -> str:
        return https_url(value, "FEDSEG_AGGREGATOR_URL")

    @model_validator(mode="after")
    def _files_exist(self) -> NodeSettings:
        check_tls_files(self.tls_cert, self.tls_key, self.tls_ca)
        if not self.data_dir.is_dir():
            raise ValueError(f"FEDSEG_DATA_DIR {self.data_dir} is not a folder")
        return self
