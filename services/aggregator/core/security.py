"""Mutual TLS: the server context, and the peer certificate carried into the ASGI scope.

uvicorn verifies the client certificate during the handshake but does not hand it to the
application, so the aggregator serves through ``PeerCertH11Protocol``: after the handshake
it reads ``ssl_object.getpeercert(binary_form=True)`` and exposes it under the ASGI TLS
extension (``scope["extensions"]["tls"]["client_cert_chain"]``, PEM strings), where the
``CurrentIdentity`` dependency reads it. No header, path or body can set it.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from uvicorn import Config
from uvicorn.protocols.http.h11_impl import H11Protocol

from services.aggregator.core.connections import ConnectionTimeouts, Deadlines
from shared.errors import ConfigurationError

try:
    import httptools
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is pinned; h11 is the pure-Python fallback
    httptools = None  # type: ignore[assignment]
    HttpToolsProtocol = H11Protocol  # type: ignore[misc,assignment]

ASGIApp = Any


def tls_extension(der: bytes | None) -> dict[str, Any]:
    """The ASGI TLS extension entry for a verified peer certificate (or none)."""
    chain = [ssl.DER_cert_to_PEM_cert(der)] if der else []
    return {"client_cert_chain": chain, "client_cert_error": None if der else "no certificate"}


class _WithPeerCertificate:
    """Per-connection ASGI wrapper that adds the peer certificate to every request scope."""

    def __init__(self, app: ASGIApp, extension: dict[str, Any]) -> None:
        self.app = app
        self.extension = extension

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            extensions = dict(scope.get("extensions") or {})
            extensions["tls"] = self.extension
            scope = {**scope, "extensions": extensions}
        await self.app(scope, receive, send)


def _wrap_for_peer(app: ASGIApp, transport: asyncio.BaseTransport) -> ASGIApp:
    ssl_object = transport.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return _WithPeerCertificate(app, tls_extension(der))


class PeerCertH11Protocol(Deadlines, H11Protocol):
    """uvicorn's h11 protocol, plus the verified client certificate in the ASGI scope and
    the connection deadlines of ``core.connections``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.app = _wrap_for_peer(self.app, transport)


class PeerCertHttpToolsProtocol(Deadlines, HttpToolsProtocol):
    """uvicorn's httptools protocol (C parser, faster on large bodies), plus the peer cert
    and the connection deadlines."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.app = _wrap_for_peer(self.app, transport)


def peer_cert_protocol(choice: str = "auto") -> type[asyncio.Protocol]:
    """The HTTP/1.1 protocol class that exposes the peer certificate (auto: the fastest)."""
    if choice == "h11" or (choice == "auto" and httptools is None):
        return PeerCertH11Protocol
    if httptools is None:
        raise ConfigurationError("FEDSEG_HTTP_PROTOCOL=httptools but httptools is not installed")
    return PeerCertHttpToolsProtocol


class MutualTlsConfig(Config):
    """uvicorn's Config, plus the connection deadlines the protocol classes read."""

    def __init__(self, app: ASGIApp, timeouts: ConnectionTimeouts, **kwargs: Any) -> None:
        super().__init__(app, timeout_keep_alive=max(1, round(timeouts.idle_s)), **kwargs)
        self.timeouts = timeouts


def mutual_tls_config(
    app: ASGIApp,
    ssl_context: ssl.SSLContext,
    http_protocol: str = "auto",
    timeouts: ConnectionTimeouts | None = None,
    **kwargs: Any,
) -> Config:
    """uvicorn Config serving ``app`` with our context and the peer-certificate protocol."""
    return MutualTlsConfig(
        app,
        timeouts or ConnectionTimeouts(),
        http=peer_cert_protocol(http_protocol),
        ssl_context_factory=lambda _config, _default: ssl_context,
        **kwargs,
    )
