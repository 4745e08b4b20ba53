"""SQLAlchemy tables of the aggregator's durable state."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the offset)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[str]: JSON}


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), index=True)
    rounds: Mapped[int] = mapped_column(Integer)
    expected_nodes: Mapped[list[str]] = mapped_column(JSON)
    min_nodes: Mapped[int] = mapped_column(Integer)
    round_timeout_s: Mapped[float] = mapped_column(Float)
    deadline_policy: Mapped[str] = mapped_column(String(16))
    max_round_attempts: Mapped[int] = mapped_column(Integer)
    model_config_json: Mapped[dict[str, Any]] = mapped_column(JSON)
    plan_json: Mapped[dict[str, Any]] = mapped_column(JSON)
    privacy_json: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    aggregation_json: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    seed: Mapped[int] = mapped_column(BigInteger)
    initial_model: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)


class ModelVersion(Base):
    __tablename__ = "model_versions"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    produced_by_round: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Round(Base):
    __tablename__ = "rounds"
    __table_args__ = (UniqueConstraint("run_id", "number", name="uq_rounds_run_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    base_model: Mapped[str] = mapped_column(ForeignKey("model_versions.sha256"))
    result_model: Mapped[str | None] = mapped_column(
        ForeignKey("model_versions.sha256"), nullable=True
    )
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    deadline: Mapped[datetime] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    server_state: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """sha256 of the blob holding a stateful strategy's state after this round (FedAdam's
    moments), read by the next round's aggregation; None for stateless strategies."""


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (UniqueConstraint("round_id", "node", name="uq_tasks_round_node"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id"), index=True)
    node: Mapped[str] = mapped_column(String(64))
    nonce: Mapped[str] = mapped_column(String(64), unique=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Update(Base):
    __tablename__ = "updates"
    __table_args__ = (UniqueConstraint("round_id", "node", name="uq_updates_round_node"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id"), index=True)
    node: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    """Digest of the uploaded bytes; for an evaluation report, of its canonical JSON."""
    has_blob: Mapped[bool] = mapped_column(default=True)
    status: Mapped[str] = mapped_column(String(16), default="accepted")
    """accepted, or declined (the node released nothing, e.g. its privacy budget is spent)."""
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    num_samples: Mapped[int] = mapped_column(BigInteger)
    metrics_json: Mapped[dict[str, Any]] = mapped_column(JSON)
    # none_as_null: a missing spend is SQL NULL, not the JSON value null.
    privacy_json: Mapped[dict[str, Any] | None] = mapped_column(
        JSON(none_as_null=True), nullable=True
    )
    privacy_total_json: Mapped[dict[str, Any] | None] = mapped_column(
        JSON(none_as_null=True), nullable=True
    )
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    accepted_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Node(Base):
    __tablename__ = "nodes"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    software_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    device: Mapped[str | None] = mapped_column(String(64), nullable=True)
    num_train_cases: Mapped[int | None] = mapped_column(Integer, nullable=True)
    num_val_cases: Mapped[int | None] = mapped_column(Integer, nullable=True)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    serial: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """Hex serial of the certificate it last connected with (is that one revoked?)."""
    failure: Mapped[str | None] = mapped_column(Text, nullable=True)
    """The failure it reported and has not recovered from (cleared by its next start-up)."""
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    """The newest failure it reported, kept after it recovered."""
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class RevokedCertificate(Base):
    """Denylist checked on every request, so revocation needs no restart."""

    __tablename__ = "revoked_certificates"

    serial: Mapped[str] = mapped_column(String(64), primary_key=True)
    """Hex serial number (X.509 serials are up to 160 bits, past BIGINT)."""
    name: Mapped[str] = mapped_column(String(64))
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
