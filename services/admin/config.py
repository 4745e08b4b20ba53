"""Admin CLI settings: the aggregator's URL and the admin kit, from FEDSEG_ADMIN_* or flags."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.errors import ConfigurationError
from shared.settings import check_tls_files, https_url

ENV_PREFIX = "FEDSEG_ADMIN_"


class AdminSettings(BaseSettings):
    """Where the aggregator is and which certificate to present (an admin's, for steering)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=None, extra="ignore")

    url: str
    ca: Path
    cert: Path
    key: Path
    timeout_s: float = Field(default=30.0, gt=0.0, le=600.0)

    @field_validator("url")
    @classmethod
    def _https_only(cls, value: str) -> str:
        return https_url(value, f"{ENV_PREFIX}URL")

    @model_validator(mode="after")
    def _files_exist(self) -> AdminSettings:
        check_tls_files(self.cert, self.key, self.ca, prefix=ENV_PREFIX)
        return self


def load_settings(overrides: dict[str, object], env_file: Path | None = None) -> AdminSettings:
    """Settings from flags, then the environment, then ``env_file``; one clear error if not."""
    if env_file is not None and not env_file.is_file():
        raise ConfigurationError(f"--env-file {env_file} does not exist")
    try:
        return AdminSettings(_env_file=env_file, **overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        if error["type"] == "missing":
            problems.append(f"{ENV_PREFIX}{field.upper()} (or --{field}) is not set")
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(message if ENV_PREFIX in message else f"{field}: {message}")
    return "; ".join(problems)
