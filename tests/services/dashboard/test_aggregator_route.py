"""The dashboard served by the aggregator itself, to any certified caller (mutual TLS)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from starlette.testclient import TestClient

from services.dashboard.assets import ASSET_NAMES, SECURITY_HEADERS, asset

ClientAs = Callable[..., TestClient]


@pytest.mark.parametrize("holder", ["admin", "site-1"])
def test_aggregator_serves_the_page_to_any_certificate(client_as: ClientAs, holder: str) -> None:
    page = client_as(holder).get("/dashboard/")
    assert page.status_code == 200
    assert page.content == asset("index.html").body
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    for name, value in SECURITY_HEADERS.items():
        assert page.headers[name] == value


@pytest.mark.parametrize("name", sorted(ASSET_NAMES))
def test_aggregator_serves_each_packaged_file(client_as: ClientAs, name: str) -> None:
    answer = client_as("admin").get(f"/dashboard/{name}")
    assert (answer.status_code, answer.content) == (200, asset(name).body)
    assert answer.headers["content-type"] == asset(name).content_type


def test_aggregator_has_no_other_dashboard_file(client_as: ClientAs) -> None:
    answer = client_as("admin").get("/dashboard/proxy.py")
    assert answer.status_code == 404
    assert answer.json()["detail"] == "the dashboard has no file 'proxy.py'"


def test_aggregator_dashboard_needs_a_client_certificate(client_as: ClientAs) -> None:
    anonymous = client_as("admin")
    anonymous.app.extension = {"client_cert_chain": [], "client_cert_error": "none"}  # type: ignore[attr-defined]
    assert anonymous.get("/dashboard/").status_code == 401


def test_aggregator_dashboard_is_not_in_the_openapi_schema(client_as: ClientAs) -> None:
    wrapped = client_as("admin").app
    paths = wrapped.app.openapi()["paths"]  # type: ignore[attr-defined]
    assert not [p for p in paths if p.startswith("/dashboard")]


def test_aggregator_redirects_the_bare_path_to_the_page(client_as: ClientAs) -> None:
    answer = client_as("site-2").get("/dashboard", follow_redirects=False)
    assert answer.status_code == 307
    assert answer.headers["location"].endswith("/dashboard/")
