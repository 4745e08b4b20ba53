"""Credentials for a whole federation at once: the CA, the server, every node and admin."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from shared.errors import PKIError
from shared.identity import Role, identity_from_certificate
from shared.pki.ca import create_ca, load_certificate
from shared.pki.files import _check_name
from shared.pki.issue import (
    DEFAULT_DNS_NAMES,
    DEFAULT_IP_ADDRESSES,
    issue_client_certificate,
    issue_server_certificate,
)
from shared.pki.kits import _check_https, issue_kit


def bootstrap(
    pki_dir: Path,
    nodes: Sequence[str],
    admins: Sequence[str] = ("admin",),
    server_name: str = "aggregator",
    dns_names: Sequence[str] = DEFAULT_DNS_NAMES,
    ip_addresses: Sequence[str] = DEFAULT_IP_ADDRESSES,
    kits_dir: Path | None = None,
    aggregator_url: str | None = None,
) -> None:
    """Create whichever of the CA, server, node and admin credentials is missing; keep the rest.

    With ``kits_dir`` every holder gets a kit folder ``kits_dir/<name>`` (see ``issue_kit``)
    instead of files beside the CA, so the CA folder can stay with the CA operator.
    """
    if kits_dir is not None and aggregator_url is None:
        raise PKIError("kits for nodes and admins need the aggregator's https:// URL")
    wanted = [(server_name, Role.SERVER)] + [(n, Role.NODE) for n in nodes]
    wanted += [(a, Role.ADMIN) for a in admins]
    seen: set[str] = set()
    for name, _ in wanted:  # validate all first, so a typo leaves no half-made folder
        _check_name(name)
        if name in seen:
            raise PKIError(f"the name {name!r} is given twice; each holder needs its own name")
        seen.add(name)
    if aggregator_url is not None:
        _check_https(aggregator_url)
    create_ca(pki_dir)
    if kits_dir is not None:
        for name, role in wanted:
            issue_kit(
                pki_dir, kits_dir / name, name, role, aggregator_url=aggregator_url,
                dns_names=dns_names, ip_addresses=ip_addresses,
            )  # fmt: skip
        return
    for name, role in wanted:
        cert_path, key_path = pki_dir / f"{name}.pem", pki_dir / f"{name}-key.pem"
        if cert_path.exists() and key_path.exists():
            existing = identity_from_certificate(load_certificate(cert_path)).role
            if existing != role:
                raise PKIError(f"{cert_path} has role {existing}, but bootstrap asks for {role}")
        elif cert_path.exists() or key_path.exists():
            raise PKIError(f"only one of {cert_path} and {key_path} exists; remove it to reissue")
        elif role is Role.SERVER:
            issue_server_certificate(pki_dir, name, dns_names, ip_addresses)
        else:
            issue_client_certificate(pki_dir, name, role)
