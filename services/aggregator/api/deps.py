"""FastAPI dependencies: the federation, settings, and the caller's certificate identity."""

from __future__ import annotations

import ssl
from functools import lru_cache
from typing import Annotated

from fastapi import Depends, Path, Query, Request

from services.aggregator.core.config import AggregatorSettings
from services.aggregator.core.notify import Signal
from services.aggregator.federation import Federation
from services.aggregator.state.nodes import check_protocol
from shared.errors import (
    AuthenticationRequiredError,
    CertificateRevokedError,
    InvalidRequestError,
    PermissionDeniedError,
    PKIError,
)
from shared.identity import Identity, Role, identity_from_der
from shared.schemas import PROTOCOL_HEADER
from shared.schemas.base import INT32_MAX


def get_federation(request: Request) -> Federation:
    federation: Federation = request.app.state.federation
    return federation


def get_settings(request: Request) -> AggregatorSettings:
    settings: AggregatorSettings = request.app.state.settings
    return settings


def get_changes(request: Request) -> Signal:
    """Fired whenever round state may have changed (wakes long-polls and the ticker)."""
    signal: Signal = request.app.state.changes
    return signal


FederationDep = Annotated[Federation, Depends(get_federation)]
SettingsDep = Annotated[AggregatorSettings, Depends(get_settings)]
ChangesDep = Annotated[Signal, Depends(get_changes)]


@lru_cache(maxsize=1024)
def _identity_of(pem: str) -> Identity:
    return identity_from_der(ssl.PEM_cert_to_DER_cert(pem))


def current_identity(request: Request, federation: FederationDep) -> Identity:
    """The verified client certificate's holder, from the TLS layer (never from the request)."""
    tls = (request.scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    if not chain:
        raise AuthenticationRequiredError("a client certificate is required")
    try:
        identity = _identity_of(chain[0])
    except PKIError as exc:
        raise PermissionDeniedError(str(exc)) from exc
    if federation.is_revoked(identity.serial):
        raise CertificateRevokedError(
            f"certificate {identity.serial:x} of {identity.name} has been revoked; "
            "ask the federation's operator for a new certificate"
        )
    return identity


CurrentIdentity = Annotated[Identity, Depends(current_identity)]

RunId = Annotated[int, Path(ge=1, le=INT32_MAX, description="a run id")]
RoundNumber = Annotated[int, Path(ge=1, le=INT32_MAX, description="a round number")]
RunFilter = Annotated[int | None, Query(ge=1, le=INT32_MAX, description="a run id")]
"""Ids and numbers in paths and queries: out of what the database stores is a 422."""


def _require(role: Role, action: str) -> object:
    def check(identity: CurrentIdentity) -> Identity:
        if identity.role != role:
            raise PermissionDeniedError(
                f"{action} needs {'an' if role[0] in 'aeiou' else 'a'} {role} certificate; "
                f"{identity.name} has role {identity.role}",
            )
        return identity

    return check


def current_node(
    request: Request,
    identity: Annotated[Identity, Depends(_require(Role.NODE, "this endpoint"))],
) -> Identity:
    """A node's identity, once its PROTOCOL_HEADER (when sent) matches this aggregator's.

    fedseg nodes send the header on every request, so a node of another release is refused
    by name at its first poll, before it trains or spends privacy budget.
    """
    sent = request.headers.get(PROTOCOL_HEADER)
    if sent is not None:
        try:
            check_protocol(identity.name, int(sent))
        except ValueError:
            raise InvalidRequestError(
                f"{PROTOCOL_HEADER} must be an integer, got {sent!r}"
            ) from None
    return identity


CurrentNode = Annotated[Identity, Depends(current_node)]
AdminNode = Annotated[Identity, Depends(_require(Role.ADMIN, "this endpoint"))]
