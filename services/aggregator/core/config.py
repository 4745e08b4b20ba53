"""Aggregator settings, from FEDSEG_* environment variables or a .env file."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Literal

from cryptography import x509
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.aggregator.core.connections import ConnectionTimeouts
from shared.errors import ConfigurationError
from shared.settings import check_tls_files


class AggregatorSettings(BaseSettings):
    """Everything the aggregator reads at start-up; TLS material has no defaults."""

    model_config = SettingsConfigDict(env_prefix="FEDSEG_", env_file=None, extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8443, ge=0, le=65535)
    tls_cert: Path
    tls_key: Path
    tls_ca: Path
    tls_crl: Path | None = None
    """The CA's revocation list (PEM), checked in every handshake; read at start-up."""
    state_dir: Path = Path("var/aggregator")
    database_url: str | None = None
    """SQLAlchemy URL; SQLite in ``state_dir`` when unset."""
    max_update_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)
    max_json_bytes: int = Field(default=1024 * 1024, ge=1024)
    """Every other request body (runs, announcements, reports) is capped at this."""
    long_poll_s: float = Field(default=30.0, gt=0.0, le=300.0)
    tick_s: float = Field(default=1.0, gt=0.0, le=60.0)
    offline_after_s: float = Field(default=120.0, ge=60.0, le=86400.0)
    """A node not seen for this long shows as ``offline`` (nodes heartbeat every 30 s)."""
    idle_timeout_s: float = Field(default=75.0, ge=1.0, le=3600.0)
    """A connection with no request in progress is closed after this long."""
    header_timeout_s: float = Field(default=30.0, ge=1.0, le=600.0)
    """A request's headers must be complete this long after its first byte."""
    body_timeout_s: float = Field(default=60.0, ge=1.0, le=3600.0)
    """A request body (or a response the client reads) may stall at most this long."""
    http_protocol: Literal["auto", "httptools", "h11"] = "auto"
    """HTTP/1.1 parser: httptools (C) when installed, h11 (pure Python) otherwise."""
    log_level: str = "info"

    @model_validator(mode="after")
    def _tls_files_exist(self) -> AggregatorSettings:
        check_tls_files(self.tls_cert, self.tls_key, self.tls_ca)
        if self.tls_crl is not None:
            _check_crl(self.tls_crl)
        return self

    @model_validator(mode="after")
    def _offline_after_a_poll(self) -> AggregatorSettings:
        if self.offline_after_s <= self.long_poll_s + 30.0:
            raise ValueError(
                f"FEDSEG_OFFLINE_AFTER_S ({self.offline_after_s:g}) must exceed "
                f"FEDSEG_LONG_POLL_S + 30 ({self.long_poll_s + 30:g}): a node waiting in a "
                "long poll would show as offline"
            )
        return self

    @property
    def connection_timeouts(self) -> ConnectionTimeouts:
        return ConnectionTimeouts(
            idle_s=self.idle_timeout_s,
            header_s=self.header_timeout_s,
            body_s=self.body_timeout_s,
        )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.state_dir / 'aggregator.db').resolve()}"

    @property
    def blob_dir(self) -> Path:
        return self.state_dir / "blobs"


def _check_crl(path: Path) -> None:
    # An expired CRL makes OpenSSL refuse every client, so it is refused here, by name.
    if not path.is_file():
        raise ValueError(f"FEDSEG_TLS_CRL points to {path}, which is not a file")
    try:
        crl = x509.load_pem_x509_crl(path.read_bytes())
    except ValueError:
        raise ValueError(
            f"FEDSEG_TLS_CRL {path} is not a PEM certificate revocation list"
        ) from None
    if crl.next_update_utc is not None and crl.next_update_utc <= datetime.now(UTC):
        raise ValueError(
            f"FEDSEG_TLS_CRL {path} expired at {crl.next_update_utc.isoformat()}; "
            f"re-sign it with `fedseg-pki crl`"
        )


@lru_cache
def get_settings() -> AggregatorSettings:
    """The process's settings; tests override the FastAPI dependency instead."""
    try:
        return AggregatorSettings()  # type: ignore[call-arg,unused-ignore]  # from the environment
    except ValueError as exc:
        raise ConfigurationError(f"aggregator configuration is invalid: {exc}") from exc
