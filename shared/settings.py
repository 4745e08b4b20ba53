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


def check_tls_files(cert: Path, key: Path, ca: Path) -> None:
    """Raise ValueError naming the setting when a TLS file is missing or its key is exposed."""
    for setting, path in (
        ("FEDSEG_TLS_CERT", cert),
        ("FEDSEG_TLS_KEY", key),
        ("FEDSEG_TLS_CA", ca),
    ):
        if not path.is_file():
            raise ValueError(f"{setting} points to {path}, which is not a file")
    if key.stat().st_mode & 0o077:
        raise ValueError(f"FEDSEG_TLS_KEY {key} is readable by group or others; chmod 600 it")
