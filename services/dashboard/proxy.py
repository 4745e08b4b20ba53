"""``fedseg-admin dashboard``: the page on loopback, its API reads forwarded over mutual TLS.

The browser talks plain HTTP to this process on the operator's own machine; this process
talks to the aggregator with the operator's certificate (the admin client's connection),
so the browser needs no client certificate and the private key never leaves this process.
Only GETs of a fixed list of read endpoints are forwarded: the page cannot steer a run,
revoke a node or download a model, whatever a script on the page (or another site) asks.

Why the standard library's ``ThreadingHTTPServer`` rather than uvicorn and starlette: the
proxy serves four static files and forwards GETs through the synchronous ``httpx.Client``
the admin CLI already holds, so an event loop buys nothing; the socket is bound in the
constructor, so a busy port is one clear error before anything says "listening"; and a
test can run it in a thread. httpx's connection pool is thread-safe, so handler threads
share one client.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import re
import socket
import socketserver
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx

from services.dashboard.assets import INDEX, SECURITY_HEADERS, asset
from shared.errors import ConfigurationError, NotFoundError
from shared.schemas import API_PREFIX

log = logging.getLogger("fedseg.admin.dashboard")

PAGE = "/dashboard/"
_ID = r"[1-9][0-9]{0,9}"
READ_ENDPOINTS = tuple(
    re.compile(f"{re.escape(API_PREFIX)}{pattern}")
    for pattern in (
        "/health",
        "/metrics",
        "/runs",
        f"/runs/{_ID}",
        f"/runs/{_ID}/rounds",
        f"/runs/{_ID}/rounds/{_ID}",
        "/rounds",
        "/nodes",
    )
)
"""The only aggregator paths forwarded (full match); everything else is a 404 here."""
_ROUNDS_QUERY = re.compile(f"run_id={_ID}")
_FORWARDED_HEADERS = ("content-type", "date", "retry-after")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def forwardable(path: str, query: str) -> bool:
    """Whether ``path?query`` is a read endpoint the proxy passes on."""
    if not any(p.fullmatch(path) for p in READ_ENDPOINTS):
        return False
    if not query:
        return True
    return path == f"{API_PREFIX}/rounds" and _ROUNDS_QUERY.fullmatch(query) is not None


class DashboardProxy(ThreadingHTTPServer):
    """Serves the packaged page and forwards allowed GETs to ``upstream``."""

    daemon_threads = True

    def __init__(self, host: str, port: int, upstream: httpx.Client, allow_remote: bool) -> None:
        if not allow_remote and not is_loopback(host):
            raise ConfigurationError(
                f"--host {host} is not a loopback address: anyone who reaches it reads the "
                "federation's status with your certificate; use 127.0.0.1, or --allow-remote"
            )
        self.upstream = upstream
        self.allow_remote = allow_remote
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            super().__init__((host, port), _Handler)
        except OSError as exc:
            raise ConfigurationError(_bind_problem(host, port, exc)) from None
        self.port = int(self.server_address[1])
        self.allowed_hosts = frozenset(
            f"{name}:{self.port}" for name in ("127.0.0.1", "localhost", "[::1]", host)
        )

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look up the host's FQDN in DNS; nothing here needs it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    @property
    def url(self) -> str:
        host = str(self.server_address[0])
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}{PAGE}"


def _bind_problem(host: str, port: int, exc: OSError) -> str:
    where = f"cannot listen on {host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return f"{where}: the port is already in use; stop what holds it or choose another --port"
    if isinstance(exc, socket.gaierror):
        return f"{where}: unknown host; give an address such as 127.0.0.1"
    return f"{where}: {exc.strerror or exc}; choose another --host or --port"


class _Handler(BaseHTTPRequestHandler):
    server: DashboardProxy
    server_version = "fedseg-dashboard"
    sys_version = ""

    def do_GET(self) -> None:
        if not self._host_allowed():
            return
        parts = urlsplit(self.path)
        if parts.path in ("/", "/dashboard"):
            self._send(HTTPStatus.FOUND, b"", "text/plain", {"Location": PAGE})
        elif parts.path.startswith(PAGE):
            self._asset(parts.path.removeprefix(PAGE) or INDEX)
        elif forwardable(parts.path, parts.query):
            self._forward(parts.path, parts.query)
        else:
            self._error(
                HTTPStatus.NOT_FOUND, f"{parts.path} is not a read endpoint this proxy serves"
            )

    def _refuse(self) -> None:
        self._error(
            HTTPStatus.METHOD_NOT_ALLOWED,
            f"the dashboard is read-only: {self.command} is not forwarded",
            {"Allow": "GET"},
        )

    # http.server dispatches on do_<METHOD>: every method but GET gets the same 405.
    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _refuse  # noqa: N815

    def _host_allowed(self) -> bool:
        # A page on another site could point its own name at 127.0.0.1 (DNS rebinding);
        # its requests then carry that name as Host, and are refused.
        host = self.headers.get("Host", "")
        if self.server.allow_remote or host in self.server.allowed_hosts:
            return True
        self._error(HTTPStatus.MISDIRECTED_REQUEST, f"Host {host!r} is not this dashboard")
        return False

    def _asset(self, name: str) -> None:
        try:
            found = asset(name)
        except NotFoundError as exc:
            self._error(HTTPStatus.NOT_FOUND, str(exc))
            return
        self._send(HTTPStatus.OK, found.body, found.content_type)

    def _forward(self, path: str, query: str) -> None:
        upstream = self.server.upstream
        try:
            answer = upstream.get(f"{path}?{query}" if query else path)
        except httpx.TransportError as exc:
            self._error(
                HTTPStatus.BAD_GATEWAY, f"cannot reach the aggregator at {upstream.base_url}: {exc}"
            )
            return
        headers = {k: v for k in _FORWARDED_HEADERS if (v := answer.headers.get(k)) is not None}
        content_type = headers.pop("content-type", "application/octet-stream")
        self._send(answer.status_code, answer.content, content_type, headers)

    def _error(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        body = json.dumps({"detail": detail}).encode()
        self._send(status, body, "application/json", headers)

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        extra = dict(headers or {})
        self.send_response_only(status)
        # The aggregator's Date travels with its answers: the page's countdown uses its clock.
        self.send_header("Date", extra.pop("date", "") or self.date_time_string())
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in {**SECURITY_HEADERS, **extra}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def serve(upstream: httpx.Client, host: str, port: int, allow_remote: bool, via: str) -> int:
    """Serve until Ctrl-C; 0 then. ``via`` names the aggregator and certificate for the log."""
    server = DashboardProxy(host, port, upstream, allow_remote)
    try:  # from here on, Ctrl-C is a clean stop, even before the first request
        print(f"dashboard on {server.url} (read-only, via {via}); Ctrl-C stops it", flush=True)
        if not is_loopback(host):
            print(
                f"fedseg-admin: warning: --allow-remote: anyone who reaches {host}:{server.port} "
                "reads the federation's status with your certificate",
                file=sys.stderr,
                flush=True,
            )
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        print("dashboard stopped", flush=True)
    finally:
        server.server_close()
    return 0
