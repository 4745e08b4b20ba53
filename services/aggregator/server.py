"""`fedseg-aggregator`: migrate, recover, then serve the API over mutual TLS."""

from __future__ import annotations

import argparse
import errno
import gc
import logging
import socket
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import uvicorn
from pydantic import ValidationError

from services.aggregator.api.main import create_app
from services.aggregator.core.blobs import BlobStore
from services.aggregator.core.config import AggregatorSettings
from services.aggregator.core.db import make_engine
from services.aggregator.core.security import mutual_tls_config
from services.aggregator.federation import Federation
from shared import logs
from shared.errors import ConfigurationError
from shared.model import warm_up
from shared.settings import describe_settings_error
from shared.tls import server_ssl_context

log = logging.getLogger("fedseg.aggregator")


def parse_args(argv: Sequence[str] | None) -> dict[str, object]:
    parser = argparse.ArgumentParser(
        prog="fedseg-aggregator",
        description="Serve the fedseg aggregator. Every option can also be set as FEDSEG_<NAME>.",
    )
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--tls-cert", type=Path)
    parser.add_argument("--tls-key", type=Path)
    parser.add_argument("--tls-ca", type=Path)
    parser.add_argument("--state-dir", type=Path)
    parser.add_argument("--database-url")
    args = parser.parse_args(argv)
    return {k: v for k, v in vars(args).items() if v is not None}


def build(settings: AggregatorSettings) -> Federation:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    federation = Federation(
        make_engine(settings.resolved_database_url),
        BlobStore(settings.blob_dir),
        offline_after=timedelta(seconds=settings.offline_after_s),
    )
    federation.migrate()
    federation.recover()
    warm_up_before_serving()
    return federation


def warm_up_before_serving() -> None:
    """Work that would otherwise stall every request while the first ones waited for it.

    The first run's initial model needs MONAI, whose import (1.7 s here) holds the
    interpreter and the import lock: done in a request, it stalled the event loop for
    1.6 s. Then everything imported (about 400,000 objects) is moved out of the garbage
    collector's sight (``gc.freeze``): a full collection scanned them all, holding the
    interpreter, and so the event loop, for 0.2 s on an idle machine and longer when busy.
    """
    warm_up()
    gc.freeze()


def main(argv: Sequence[str] | None = None) -> int:
    overrides = parse_args(argv)
    try:
        settings = AggregatorSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        print(
            f"fedseg-aggregator: configuration error: {describe_settings_error(exc)}",
            file=sys.stderr,
        )
        return 2
    logs.configure(settings.log_level)
    try:
        federation = build(settings)
        context = server_ssl_context(
            settings.tls_cert, settings.tls_key, settings.tls_ca, settings.tls_crl
        )
    except (ConfigurationError, OSError) as exc:
        print(f"fedseg-aggregator: cannot start: {exc}", file=sys.stderr)
        return 2
    app = create_app(settings, federation)
    config = mutual_tls_config(
        app,
        context,
        http_protocol=settings.http_protocol,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeouts=settings.connection_timeouts,
    )
    try:
        sock = listening_socket(settings.host, settings.port)
    except OSError as exc:
        print(f"fedseg-aggregator: cannot start: {exc.strerror or exc}", file=sys.stderr)
        return 2
    server = uvicorn.Server(config)
    log.info("aggregator listening on https://%s:%d (mutual TLS)", settings.host, settings.port)
    try:
        server.run(sockets=[sock])
    finally:
        federation.close()  # no fold is left running against a closing database
    return 0


def listening_socket(host: str, port: int) -> socket.socket:
    """Bind before saying "listening", so a busy port is one line, not a late traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise OSError(
                exc.errno,
                f"port {port} on {host} is already in use; stop the other process or set "
                "FEDSEG_PORT to a free port",
            ) from None
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None


if __name__ == "__main__":
    raise SystemExit(main())
