"""Alembic: a database at 0001 with rows in it upgrades to head and keeps every row."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import command
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.orm import Session

from services.aggregator.core.db import alembic_config, make_engine
from services.aggregator.state.models import RevokedCertificate, Run, Update
from shared.model import ModelConfig
from shared.schemas import TrainingPlan

SHA = "ab" * 32
WHEN = datetime(2026, 11, 1, 12, 0, 0)  # naive UTC, as the 0001 schema stores it


def _columns(engine: sa.Engine, table: str) -> set[str]:
    return {column["name"] for column in sa.inspect(engine).get_columns(table)}


def _revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _insert_at_0001(engine: sa.Engine) -> None:
    meta = sa.MetaData()
    meta.reflect(engine)
    runs, versions, rounds = (
        meta.tables["runs"],
        meta.tables["model_versions"],
        meta.tables["rounds"],
    )
    with engine.begin() as conn:
        conn.execute(
            runs.insert().values(
                id=1, name="old", state="running", rounds=2, expected_nodes=["site-1"],
                min_nodes=1, round_timeout_s=60.0, deadline_policy="reopen",
                max_round_attempts=3, model_config_json=ModelConfig().model_dump(mode="json"),
                plan_json=TrainingPlan().model_dump(mode="json"), seed=7, initial_model=SHA,
                created_by="admin", created_at=WHEN,
            )
        )  # fmt: skip
        conn.execute(
            versions.insert().values(
                sha256=SHA, run_id=1, produced_by_round=0, size_bytes=10, created_at=WHEN
            )
        )
        conn.execute(
            rounds.insert().values(
                id=1, run_id=1, number=1, kind="train", state="open", attempt=1,
                base_model=SHA, opened_at=WHEN, deadline=WHEN,
            )
        )  # fmt: skip
        conn.execute(
            meta.tables["updates"].insert().values(
                round_id=1, node="site-1", sha256="cd" * 32, has_blob=True, num_samples=4,
                metrics_json={"train_loss": 0.5}, size_bytes=123, accepted_at=WHEN,
            )
        )  # fmt: skip
        conn.execute(
            meta.tables["revoked_certificates"]
            .insert()
            .values(serial="abc", name="site-9", revoked_at=WHEN, reason="stolen")
        )


def test_a_0001_database_upgrades_to_head_and_keeps_its_rows(database_url: str) -> None:
    engine = make_engine(database_url)
    config = alembic_config(engine)
    command.upgrade(config, "0001")
    assert _revision(engine) == "0001"
    assert "status" not in _columns(engine, "updates")
    _insert_at_0001(engine)

    command.upgrade(config, "head")

    assert _revision(engine) == ScriptDirectory.from_config(config).get_current_head()
    assert "privacy_json" in _columns(engine, "runs")
    assert {"status", "detail", "privacy_json", "privacy_total_json"} <= _columns(engine, "updates")
    with Session(engine) as session:
        run = session.get(Run, 1)
        assert run is not None
        assert (run.name, run.seed, run.expected_nodes, run.privacy_json) == (
            "old",
            7,
            ["site-1"],
            {},
        )
        assert run.created_at.isoformat() == "2026-11-01T12:00:00+00:00"
        update = session.scalars(sa.select(Update)).one()
        assert (update.node, update.num_samples, update.metrics_json) == (
            "site-1",
            4,
            {"train_loss": 0.5},
        )
        assert (update.status, update.detail, update.privacy_json) == ("accepted", None, None)
        revoked = session.get(RevokedCertificate, "abc")
        assert revoked is not None
        assert (revoked.name, revoked.reason) == ("site-9", "stolen")
    engine.dispose()
