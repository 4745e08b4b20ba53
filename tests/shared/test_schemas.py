"""The schemas package re-exports exactly the public names of the former flat module."""

from __future__ import annotations

import shared.schemas

PUBLIC_NAMES = [
    "API_PREFIX",
    "MANIFEST_KEY",
    "SHA256_PATTERN",
    "Announcement",
    "DeadlinePolicy",
    "Decline",
    "ErrorBody",
    "EvaluationReport",
    "Health",
    "Mechanism",
    "NodeName",
    "NodeUpdateView",
    "NodeView",
    "PrivacyPolicy",
    "PrivacySpend",
    "PrivacyTotal",
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


def test_schemas_all_is_the_former_public_set() -> None:
    assert sorted(shared.schemas.__all__) == sorted(PUBLIC_NAMES)
    assert len(shared.schemas.__all__) == len(set(shared.schemas.__all__))


def test_schemas_every_exported_class_is_defined_in_the_package() -> None:
    classes = [getattr(shared.schemas, name) for name in PUBLIC_NAMES]
    modules = {cls.__name__: cls.__module__ for cls in classes if isinstance(cls, type)}
    assert len(modules) == 28
    assert all(module.startswith("shared.schemas.") for module in modules.values())
