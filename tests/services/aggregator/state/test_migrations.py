"""Alembic: the migrations create exactly the schema the models describe, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from services.aggregator.core.db import make_engine, upgrade_schema
from services.aggregator.state.models import Base


def test_migrations_match_models(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade_schema(engine)
    upgrade_schema(engine)  # a second upgrade is a no-op
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []
