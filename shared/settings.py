"""Turn a settings validation error into sentences that name the environment variables."""

from __future__ import annotations

from pydantic import ValidationError


def describe_settings_error(exc: ValidationError, prefix: str = "FEDSEG_") -> str:
    """One line per problem, e.g. 'FEDSEG_TLS_CERT: field required'."""
    lines = []
    for error in exc.errors():
        field = "_".join(str(part) for part in error["loc"] if isinstance(part, str))
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{prefix}{field.upper()}: {message}" if field else message)
    return "; ".join(lines)
