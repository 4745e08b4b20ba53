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


class PeerCertH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus the verified client certificate in the ASGI scope."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        self.app = _WithPeerCertificate(self.app, tls_extension(der))


def mutual_tls_config(app: ASGIApp, ssl_context: ssl.SSLContext, **kwargs: Any) -> Config:
    """uvicorn Config serving ``app`` with our context and the peer-certificate protocol."""
    return Config(
        app,
        http=PeerCertH11Protocol,
        ssl_context_factory=lambda _config, _default: ssl_context,
        **kwargs,
    )
