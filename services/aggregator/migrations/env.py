"""Alembic environment: runs migrations on the engine the aggregator hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from services.aggregator.state.models import Base

target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = context.config.attributes.get("engine")
    if not isinstance(engine, Engine):
        raise RuntimeError("fedseg migrations need an engine in config.attributes['engine']")
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
