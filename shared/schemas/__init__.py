"""Wire schemas shared by the aggregator and the node: every JSON body has a model here."""

from __future__ import annotations

from shared.schemas.base import (
    API_PREFIX,
    MANIFEST_KEY,
    PROTOCOL_HEADER,
    PROTOCOL_VERSION,
    SHA256_PATTERN,
    NodeName,
)
from shared.schemas.metrics import RegionDice, RegionDistance, UpdateMetrics
from shared.schemas.privacy import (
    Mechanism,
    MetricsRelease,
    PrivacyPolicy,
    PrivacySpend,
    PrivacyTotal,
    PrivacyUnit,
    SelectionScope,
)
from shared.schemas.reports import (
    Announcement,
    Decline,
    EvaluationReport,
    NodeFailure,
    UpdateManifest,
    UpdateReceipt,
)
from shared.schemas.runs import Aggregation, AggregationName, RunCreate, TrainingPlan
from shared.schemas.states import (
    DeadlinePolicy,
    FailureKind,
    NodeState,
    RoundKind,
    RoundState,
    RunState,
    UpdateStatus,
)
from shared.schemas.tasks import Task, TaskPoll
from shared.schemas.views import ErrorBody, Health, NodeUpdateView, NodeView, RoundView, RunView

__all__ = [
    "API_PREFIX",
    "MANIFEST_KEY",
    "PROTOCOL_HEADER",
    "PROTOCOL_VERSION",
    "SHA256_PATTERN",
    "Aggregation",
    "AggregationName",
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
