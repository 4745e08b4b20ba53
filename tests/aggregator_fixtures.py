"""Aggregator fixtures (a plugin of the root conftest): a Federation, the app, clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from services.aggregator.api.main import create_app
from services.aggregator.core.blobs import BlobStore
from services.aggregator.core.config import AggregatorSettings
from services.aggregator.core.db import make_engine
from services.aggregator.core.security import _WithPeerCertificate, tls_extension
from services.aggregator.federation import Federation
from tests.services.aggregator.support import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def federation(database_url: str, tmp_path: Path, clock: FakeClock) -> Iterator[Federation]:
    engine = make_engine(database_url)
    fed = Federation(engine, BlobStore(tmp_path / "blobs"), clock=clock)
    fed.migrate()
    yield fed
    fed.close()
    engine.dispose()


@pytest.fixture
def settings(pki_dir: Path, tmp_path: Path) -> AggregatorSettings:
    return AggregatorSettings(
        tls_cert=pki_dir / "aggregator.pem",
        tls_key=pki_dir / "aggregator-key.pem",
        tls_ca=pki_dir / "ca.pem",
        state_dir=tmp_path,
        max_update_bytes=4 * 1024 * 1024,
        long_poll_s=5.0,
    )


def pem_of(path: Path) -> bytes:
    import ssl

    return ssl.PEM_cert_to_DER_cert(path.read_text())


@pytest.fixture
def client_as(
    settings: AggregatorSettings, federation: Federation, pki_dir: Path
) -> Callable[[str], TestClient]:
    """client_as("site-1") -> a client whose TLS layer presents site-1's certificate."""
    app = create_app(settings, federation)

    def make(name: str, cert: Path | None = None) -> TestClient:
        der = pem_of(cert or pki_dir / f"{name}.pem")
        return TestClient(_WithPeerCertificate(app, tls_extension(der)), base_url="https://t")

    return make
