"""`fedseg-node`: one hospital's node; outbound HTTPS with its certificate, data stays here."""

from __future__ import annotations

import argparse
import logging
import platform
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx
import torch
from pydantic import ValidationError

from services.node import ledger_cli
from services.node.client import AggregatorClient
from services.node.config import NodeSettings
from services.node.data.cache import CACHE_FOLDER, CaseCache
from services.node.data.layout import load_local_split
from services.node.ledger import PrivacyLedger, federation_id
from services.node.privacy import delta_too_large
from services.node.runner import LocalData, NodeRunner, PrivacyGuard
from services.node.state_lock import StateLock
from services.node.training import data_workers, select_device
from shared import logs
from shared.errors import (
    ConfigurationError,
    DataError,
    FedsegError,
    PermissionDeniedError,
    ProtocolMismatchError,
    TransportError,
)
from shared.identity import identity_from_certificate
from shared.pki import load_certificate
from shared.schemas import PROTOCOL_VERSION, Announcement, FailureKind, NodeFailure
from shared.settings import describe_settings_error, kit_env_values
from shared.tls import client_ssl_context

log = logging.getLogger("fedseg.node")
VERSION = "0.1.0"


def parse_args(argv: Sequence[str] | None) -> dict[str, object]:
    parser = argparse.ArgumentParser(
        prog="fedseg-node",
        description="Run a fedseg hospital node. Every option can also be set as FEDSEG_<NAME>.",
    )
    parser.add_argument("--aggregator-url")
    parser.add_argument("--tls-cert", type=Path)
    parser.add_argument("--tls-key", type=Path)
    parser.add_argument("--tls-ca", type=Path)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--state-dir", type=Path)
    parser.add_argument("--device")
    parser.add_argument("--exit-when-done", action="store_true", default=None)
    parser.add_argument(
        "--env-file",
        type=Path,
        help="a kit's node.env; its paths are found in the kit's folder when used outside "
        "a container; flags and FEDSEG_* variables win over it",
    )
    args = parser.parse_args(argv)
    chosen = {k: v for k, v in vars(args).items() if v is not None and k != "env_file"}
    if args.env_file is None:
        return chosen
    try:
        from_file: dict[str, object] = dict(kit_env_values(args.env_file))
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    return {**from_file, **chosen}


def load_local_data(settings: NodeSettings) -> LocalData:
    """The hospital's cases (BraTS folders or a Decathlon Task01 folder), split for validation.

    With the case cache on, cases come from (and go to) ``state_dir/cases``, memory-mapped,
    and entries of cases no longer in the data folder are deleted. With it off, a cache left
    by an earlier start is deleted: preprocessed patient images are not kept unasked.
    """
    folder = settings.state_dir / CACHE_FOLDER
    if not settings.case_cache:
        train, val = load_local_split(settings.data_dir, settings.val_fraction, settings.split_seed)
        if folder.exists():
            shutil.rmtree(folder)
            log.info("case cache: off, so %s was deleted", folder)
        return LocalData(train=train, val=val)
    cache = CaseCache(folder)
    train, val = load_local_split(
        settings.data_dir, settings.val_fraction, settings.split_seed, load=cache.load
    )
    removed = cache.prune()
    if removed:
        log.info("case cache: removed %d entries of cases no longer present", len(removed))
    return LocalData(train=train, val=val)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["ledger"]:
        logs.configure("info")
        return ledger_cli.main(arguments[1:])
    try:
        settings = NodeSettings(**parse_args(argv))  # type: ignore[arg-type]
    except ValidationError as exc:
        print(f"fedseg-node: configuration error: {describe_settings_error(exc)}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    try:
        me = identity_from_certificate(load_certificate(settings.tls_cert))
        context = client_ssl_context(settings.tls_cert, settings.tls_key, settings.tls_ca)
        _state_lock = StateLock(settings.state_dir)  # held until the process ends
    except FedsegError as exc:
        return _stop(f"cannot start: {exc}", EXIT_CANNOT_START)
    http = httpx.Client(
        base_url=settings.aggregator_url, verify=context, timeout=settings.request_timeout_s
    )
    with http:
        client = AggregatorClient(http, max_backoff_s=settings.max_backoff_s)
        started = False
        try:
            runner = _start(settings, client, me.name)
            started = True
            log.info("node %s on %s polling %s", me.name, platform.node(), settings.aggregator_url)
            return runner.run(settings.poll_wait_s, settings.exit_when_done)
        except KeyboardInterrupt:
            return _stop("interrupted", EXIT_INTERRUPTED)
        except Exception as exc:  # every way out ends in one line and an exit code
            return _ended(exc, client, started)


def _ended(exc: Exception, client: AggregatorClient, started: bool) -> int:
    """Say in one line why the node stops; tell the aggregator when it is a failure here."""
    if isinstance(exc, ProtocolMismatchError):  # e.g. the aggregator was upgraded under it
        return _stop(f"stopped: {exc}", EXIT_CANNOT_START)
    if isinstance(exc, PermissionDeniedError):  # revoked, or not a node certificate
        return _stop(f"refused: {exc}", EXIT_REFUSED)
    client.report_failure(_failure(exc))
    if isinstance(exc, FedsegError):  # data, configuration, ledger, transport
        if started:
            return _stop(f"stopped: {exc}", EXIT_FAILED)
        return _stop(f"cannot start: {exc}", EXIT_CANNOT_START)
    log.debug("the crash, in full", exc_info=exc)
    return _stop(
        f"stopped: training crashed ({type(exc).__name__}: {exc}); run with "
        "FEDSEG_LOG_LEVEL=debug for the full trace",
        EXIT_FAILED,
    )


EXIT_COMPLETED, EXIT_FAILED, EXIT_CANNOT_START, EXIT_REFUSED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
"""fedseg-node's exit codes (deploy/README.md, "Exit codes")."""


def _stop(message: str, code: int) -> int:
    print(f"fedseg-node: {message}", file=sys.stderr)
    return code


def _failure(exc: BaseException) -> NodeFailure:
    """What the aggregator is told: a category and, for fedseg's own errors, their class.

    Never the message. A crash in training says only ``training``/``Exception``: which
    exception it was (a non-finite loss, say) can depend on the patients' data, and this
    report is outside the privacy ledger (docs/privacy.md, "What leaves a node").
    """
    kind = next(
        (kind for cls, kind in _FAILURE_KINDS if isinstance(exc, cls)), FailureKind.TRAINING
    )
    name = type(exc).__name__ if isinstance(exc, FedsegError) else "Exception"
    return NodeFailure(kind=kind, error_type=name[:80])


_FAILURE_KINDS: tuple[tuple[type[BaseException], FailureKind], ...] = (
    (DataError, FailureKind.DATA),
    (ConfigurationError, FailureKind.CONFIGURATION),
    (TransportError, FailureKind.CONNECTION),
    (FedsegError, FailureKind.INTERNAL),
)


def _start(settings: NodeSettings, client: AggregatorClient, name: str) -> NodeRunner:
    """Check the ledger, read the data, announce: a runner ready to take tasks."""
    device = select_device(settings.device)
    workers = data_workers(settings.data_workers, device)
    # Before any data is read: a missing or damaged ledger stops the node here.
    ledger = PrivacyLedger(settings.state_dir, settings.privacy_budget_delta)
    federation = federation_id(settings.tls_ca)
    data = load_local_data(settings)
    too_large = delta_too_large(settings.privacy_budget_delta, len(data.train))
    if too_large is not None:
        raise ConfigurationError(too_large)
    log.info(
        "node %s: %d training and %d validation cases on %s, %d data worker(s)",
        name, len(data.train), len(data.val), device, workers,
    )  # fmt: skip
    client.announce(
        Announcement(
            protocol=PROTOCOL_VERSION,
            software_version=f"fedseg {VERSION} torch {torch.__version__}",
            device=str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
            num_train_cases=len(data.train) if settings.announce_case_counts else None,
            num_val_cases=len(data.val) if settings.announce_case_counts else None,
        )
    )
    guard = PrivacyGuard(
        ledger=ledger,
        federation=federation,
        local_policy=settings.privacy_policy,
        budget_epsilon=settings.privacy_budget_epsilon,
        budget_delta=settings.privacy_budget_delta,
    )
    return NodeRunner(client, data, settings.state_dir, device, name, guard, workers=workers)


if __name__ == "__main__":
    raise SystemExit(main())
