"""A dashboard proxy in a thread, forwarding to a scripted aggregator (httpx MockTransport)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
import pytest

from services.dashboard.proxy import DashboardProxy

Upstream = Callable[[httpx.Request], httpx.Response]
UPSTREAM_URL = "https://aggregator.test:8443"


@dataclass
class Scripted:
    """Answers per path; records every request the proxy forwarded."""

    answers: dict[str, httpx.Response] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)
    fail_with: Exception | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        target = request.url.raw_path.decode()
        self.seen.append(target)
        if self.fail_with is not None:
            raise self.fail_with
        return self.answers.get(target) or httpx.Response(200, json={"path": target})


@dataclass
class RunningProxy:
    server: DashboardProxy
    upstream: Scripted

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return httpx.request("GET", self.base + path, **kwargs)  # type: ignore[arg-type]


@contextmanager
def running_proxy() -> Iterator[RunningProxy]:
    """A proxy on a free loopback port, serving in a thread, over a scripted upstream."""
    upstream = Scripted()
    client = httpx.Client(base_url=UPSTREAM_URL, transport=httpx.MockTransport(upstream))
    server = DashboardProxy("127.0.0.1", 0, client, allow_remote=False)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield RunningProxy(server, upstream)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        client.close()


@pytest.fixture
def proxy() -> Iterator[RunningProxy]:
    with running_proxy() as running:
        yield running
