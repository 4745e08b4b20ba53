"""Turn a settings validation error into sentences that name the environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError


def describe_settings_error(exc: ValidationError, prefix: str = "FEDSEG_") -> str:
    """One line per problem, e.g. 'FEDSEG_TLS_CERT: field required'."""
    lines = []
    for error in exc.errors():
        field = "_".join(str(part) for part in error["loc"] if isinstance(part, str))
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{prefix}{field.upper()}: {message}" if field else message)
    return "; ".join(lines)


def check_tls_files(cert: Path, key: Path, ca: Path, prefix: str = "FEDSEG_TLS_") -> None:
    """Raise ValueError naming the setting when a TLS file is missing or its key is exposed."""
    for setting, path in (("CERT", cert), ("KEY", key), ("CA", ca)):
        if not path.is_file():
            raise ValueError(f"{prefix}{setting} points to {path}, which is not a file")
    if key.stat().st_mode & 0o077:
        raise ValueError(f"{prefix}KEY {key} is readable by group or others; chmod 600 it")


def https_url(value: str, setting: str) -> str:
    """``value`` without a trailing slash, or ValueError unless it is an https:// URL."""
    if not value.startswith("https://"):
        raise ValueError(f"{setting} must start with https://, got {value!r}")
    return value.rstrip("/")
