"""Turn a settings validation error into sentences that name the environment variables."""

from __future__ import annotations

import os
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


def kit_env_values(path: Path, prefix: str = "FEDSEG_") -> dict[str, str]:
    """Settings from a kit's env file (``node.env``, ``admin.env``) as field values.

    A kit is written for the folder it is mounted at in a container (``/kit``); used where
    it lies instead, a file path that does not exist but names a file of the kit's own
    folder means that file. Variables already set in the environment win over the file.
    """
    if not path.is_file():
        raise FileNotFoundError(f"--env-file {path} does not exist")
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, equals, value = line.partition("=")
        key, value = key.strip().removeprefix("export "), value.strip().strip("\"'")
        if not equals or not key:
            raise ValueError(f"{path}:{number} is not KEY=value")
        if not key.startswith(prefix) or key in os.environ:
            continue
        if value.startswith("/") and not Path(value).exists():
            local = path.parent / Path(value).name
            if local.is_file():
                value = str(local)
        values[key.removeprefix(prefix).lower()] = value
    return values
