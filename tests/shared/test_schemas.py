"""The schemas package's public names, and a digest of every wire schema per protocol version."""

from __future__ import annotations

import enum
import hashlib
import json

import pydantic
import pytest

import shared.schemas

PUBLIC_NAMES = [
    "API_PREFIX",
    "Aggregation",
    "AggregationName",
    "MANIFEST_KEY",
    "PROTOCOL_HEADER",
    "PROTOCOL_VERSION",
    "SHA256_PATTERN",
    "Announcement",
    "DeadlinePolicy",
    "Decline",
    "ErrorBody",
    "EvaluationReport",
    "FailureKind",
    "Health",
    "Mechanism",
    "MetricsRelease",
    "NodeFailure",
    "NodeName",
    "NodeState",
    "NodeUpdateView",
    "NodeView",
    "PrivacyPolicy",
    "PrivacySpend",
    "PrivacyTotal",
    "PrivacyUnit",
    "RegionDice",
    "RegionDistance",
    "RoundKind",
    "RoundState",
    "RoundView",
    "RunCreate",
    "RunState",
    "RunView",
    "SelectionScope",
    "Task",
    "TaskPoll",
    "TrainingPlan",
    "UpdateManifest",
    "UpdateMetrics",
    "UpdateReceipt",
    "UpdateStatus",
]


def test_schemas_all_is_the_public_set() -> None:
    assert sorted(shared.schemas.__all__) == sorted(PUBLIC_NAMES)
    assert len(shared.schemas.__all__) == len(set(shared.schemas.__all__))


def test_schemas_every_exported_class_is_defined_in_the_package() -> None:
    classes = [getattr(shared.schemas, name) for name in PUBLIC_NAMES]
    modules = {cls.__name__: cls.__module__ for cls in classes if isinstance(cls, type)}
    assert len(modules) == 35
    assert all(module.startswith("shared.schemas.") for module in modules.values())


@pytest.mark.parametrize("number", ["Infinity", "-Infinity", "NaN"])
def test_no_schema_accepts_a_non_finite_number(number: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="Input should be a finite number"):
        shared.schemas.UpdateMetrics.model_validate_json(f'{{"train_loss": {number}}}')
    with pytest.raises(pydantic.ValidationError, match="Input should be a finite number"):
        shared.schemas.PrivacySpend.model_validate_json(
            f'{{"mechanism": "svt", "accounting": "x", "parameters": {{"clip": {number}}}}}'
        )


def _without_prose(schema: object) -> object:
    """A JSON schema without titles and descriptions: docs may change, the wire may not."""
    if isinstance(schema, dict):
        return {
            key: _without_prose(value)
            for key, value in schema.items()
            if key not in ("title", "description")
        }
    if isinstance(schema, list):
        return [_without_prose(value) for value in schema]
    return schema


def wire_digest() -> str:
    """Every wire schema's JSON schema (types, constraints, defaults, required fields) and
    model configuration (extra fields, finite numbers), and every enum's values."""
    shape: dict[str, object] = {}
    for name in sorted(shared.schemas.__all__):
        model = getattr(shared.schemas, name)
        if isinstance(model, type) and issubclass(model, pydantic.BaseModel):
            config = {key: repr(value) for key, value in sorted(model.model_config.items())}
            shape[name] = [_without_prose(model.model_json_schema()), config]
        elif isinstance(model, type) and issubclass(model, enum.Enum):
            shape[name] = [member.value for member in model]
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()


WIRE_DIGESTS = {
    1: "3f3d7c820abf902a03af17a8e0dbcc006965b1b3e6269a036eb9d8c3de820594",
    2: "6f496c78f9efa856b15c629f35f880b92e526f997b943cd9615c9526b06a8c14",
    3: "adf9be695d8efb99d18ea46b7534ab6e6e62286d36303df827f63675d29c5943",
    4: "6b67a2204b750942c1bbdd533c8cb3beeaf1791da668ccccffc4fc347b9a6abb",
}
"""What each PROTOCOL_VERSION's schemas look like; a new version adds its digest."""


def test_wire_schemas_are_those_of_the_protocol_version() -> None:
    assert wire_digest() == WIRE_DIGESTS[shared.schemas.PROTOCOL_VERSION], (
        "a wire schema changed: bump PROTOCOL_VERSION in shared/schemas/base.py and record "
        f"WIRE_DIGESTS[{shared.schemas.PROTOCOL_VERSION + 1}] = {wire_digest()!r} here"
    )
