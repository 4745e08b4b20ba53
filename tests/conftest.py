"""Fixtures shared by the whole suite: a federation PKI, databases, clients per identity."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import torch

torch.set_num_threads(1)

pytest_plugins = ["tests.aggregator_fixtures"]

POSTGRES_URL = os.environ.get(
    "FEDSEG_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A federation CA with the aggregator, site-1..3 and admin certificates."""
    from shared.pki import bootstrap

    directory = tmp_path_factory.mktemp("pki")
    bootstrap(directory, nodes=["site-1", "site-2", "site-3"], admins=["admin"])
    return directory


@pytest.fixture(scope="session")
def other_ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, unrelated CA that also issued a 'site-1' certificate."""
    from shared.pki import bootstrap

    directory = tmp_path_factory.mktemp("other-pki")
    bootstrap(directory, nodes=["site-1"], admins=[])
    return directory


@pytest.fixture(scope="session")
def expired_dir(pki_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An expired node certificate from the federation CA."""
    from shared.identity import Role
    from shared.pki import issue_client_certificate

    directory = tmp_path_factory.mktemp("expired")
    now = datetime.now(UTC)
    issue_client_certificate(
        pki_dir,
        "site-1",
        Role.NODE,
        out_dir=directory,
        not_valid_before=now - timedelta(days=30),
        not_valid_after=now - timedelta(days=1),
    )
    return directory


def _postgres_database() -> Iterator[str]:
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"fedseg_{secrets.token_hex(6)}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {exc}")
    url = sa.engine.make_url(POSTGRES_URL).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same tests on SQLite (a file, WAL) and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _postgres_database()
