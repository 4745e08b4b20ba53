"""What every wire schema shares: the strict base model, node names, API constants."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints

from shared.identity import NAME_PATTERN

PROTOCOL_VERSION = 4
"""The version of these wire schemas. Schemas forbid unknown fields, so an aggregator and a
node on different versions would misread each other; a node sends its version with every
request (PROTOCOL_HEADER) and in its announcement, and the aggregator refuses a different
one by name. Bump it with every change to a wire schema
(tests/shared/test_schemas.py records what each version looks like)."""
PROTOCOL_HEADER = "x-fedseg-protocol"
"""Every request of a node carries its PROTOCOL_VERSION in this header."""
SHA256_PATTERN = r"^[0-9a-f]{64}$"
API_PREFIX = "/api/v1"
MANIFEST_KEY = "fedseg.manifest"
"""Key of the JSON manifest in an update's safetensors ``__metadata__``."""


NodeName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]

INT32_MAX = 2**31 - 1
INT63_MAX = 2**63 - 1
MAX_COUNT = 1_000_000_000
"""The largest case or sample count any body may carry (it fits every database column)."""
# Integers on the wire: JSON integers only (no "1", no true), in ranges both databases store.
Number = Annotated[int, Strict(), Field(ge=1, le=INT32_MAX)]
"""A run id or round number."""
Count = Annotated[int, Strict(), Field(ge=0, le=MAX_COUNT)]
Weight = Annotated[int, Strict(), Field(ge=1, le=MAX_COUNT)]
Seed = Annotated[int, Strict(), Field(ge=0, le=INT63_MAX)]


class _Strict(BaseModel):
    # No Infinity or NaN anywhere: JSON has no such numbers, the database would store them
    # as null, and a view reading that row back would fail for every caller.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
