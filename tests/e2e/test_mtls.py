"""Real sockets, real TLS: who can connect to the aggregator at all, and as whom."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest

from services.demo.processes import Kit
from tests.e2e.conftest import AggregatorProcess

pytestmark = pytest.mark.slow


def test_client_without_certificate_cannot_connect(aggregator: AggregatorProcess) -> None:
    context = ssl.create_default_context(cafile=str(aggregator.pki_dir / "ca.pem"))
    with (
        httpx.Client(base_url=aggregator.url, verify=context) as client,
        pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)),
    ):
        client.get("/api/v1/health")


def test_certificate_from_another_ca_cannot_connect(
    aggregator: AggregatorProcess, other_ca_dir: Path
) -> None:
    foreign = Kit(
        aggregator.pki_dir / "ca.pem", other_ca_dir / "site-1.pem", other_ca_dir / "site-1-key.pem"
    )
    with (
        foreign.http(aggregator.url) as client,
        pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)),
    ):
        client.get("/api/v1/health")


def test_expired_certificate_cannot_connect(
    aggregator: AggregatorProcess, expired_dir: Path
) -> None:
    expired = Kit(
        aggregator.pki_dir / "ca.pem", expired_dir / "site-1.pem", expired_dir / "site-1-key.pem"
    )
    with (
        expired.http(aggregator.url) as client,
        pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)),
    ):
        client.get("/api/v1/health")


def test_node_certificate_connects_but_cannot_administer(aggregator: AggregatorProcess) -> None:
    with aggregator.client("site-1") as node:
        assert node.get("/api/v1/health").json() == {"status": "ok", "version": "0.1.0"}
        refused = node.post("/api/v1/runs/1/abort")
        assert refused.status_code == 403
        assert refused.json() == {
            "detail": "this endpoint needs an admin certificate; site-1 has role node",
            "code": "permission_denied",
        }


def test_client_refuses_server_outside_the_federation(
    aggregator: AggregatorProcess, other_ca_dir: Path
) -> None:
    """A node trusting only its own federation's CA will not talk to an impostor."""
    impostor_trust = Kit(other_ca_dir / "ca.pem", aggregator.pki_dir / "site-1.pem",
                         aggregator.pki_dir / "site-1-key.pem")  # fmt: skip
    with impostor_trust.http(aggregator.url) as client, pytest.raises(httpx.ConnectError):
        client.get("/api/v1/health")
