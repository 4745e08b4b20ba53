"""What every wire schema shares: the strict base model, node names, API constants."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

from shared.identity import NAME_PATTERN

SHA256_PATTERN = r"^[0-9a-f]{64}$"
API_PREFIX = "/api/v1"
MANIFEST_KEY = "fedseg.manifest"
"""Key of the JSON manifest in an update's safetensors ``__metadata__``."""


NodeName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
