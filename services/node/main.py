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
from shared.errors import ConfigurationError, FedsegError, ProtocolMismatchError
from shared.identity import identity_from_certificate
from shared.pki import load_certificate
from shared.schemas import PROTOCOL_VERSION, Announcement
from shared.settings import describe_settings_error
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
    args = parser.parse_args(argv)
    return {k: v for k, v in vars(args).items() if v is not None}


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
        logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return ledger_cli.main(arguments[1:])
    try:
        settings = NodeSettings(**parse_args(argv))  # type: ignore[arg-type]
    except ValidationError as exc:
        print(f"fedseg-node: configuration error: {describe_settings_error(exc)}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        me = identity_from_certificate(load_certificate(settings.tls_cert))
        device = select_device(settings.device)
        workers = data_workers(settings.data_workers, device)
        _state_lock = StateLock(settings.state_dir)  # held until the process ends
        # Before any data is read: a missing or damaged ledger stops the node here.
        ledger = PrivacyLedger(settings.state_dir, settings.privacy_budget_delta)
        federation = federation_id(settings.tls_ca)
        data = load_local_data(settings)
        if (
            too_large := delta_too_large(settings.privacy_budget_delta, len(data.train))
        ) is not None:
            raise ConfigurationError(too_large)
        context = client_ssl_context(settings.tls_cert, settings.tls_key, settings.tls_ca)
    except FedsegError as exc:
        print(f"fedseg-node: cannot start: {exc}", file=sys.stderr)
        return 2
    log.info(
        "node %s: %d training and %d validation cases on %s, %d data worker(s)",
        me.name, len(data.train), len(data.val), device, workers,
    )  # fmt: skip
    http = httpx.Client(
        base_url=settings.aggregator_url, verify=context, timeout=settings.request_timeout_s
    )
    with http:
        client = AggregatorClient(http, max_backoff_s=settings.max_backoff_s)
        announcement = Announcement(
            protocol=PROTOCOL_VERSION,
            software_version=f"fedseg {VERSION} torch {torch.__version__}",
            device=str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
            num_train_cases=len(data.train) if settings.announce_case_counts else None,
            num_val_cases=len(data.val) if settings.announce_case_counts else None,
        )
        try:
            client.announce(announcement)
        except FedsegError as exc:  # refused (another protocol, a bad certificate) or unreachable
            print(f"fedseg-node: cannot start: {exc}", file=sys.stderr)
            return 2
        guard = PrivacyGuard(
            ledger=ledger,
            federation=federation,
            local_policy=settings.privacy_policy,
            budget_epsilon=settings.privacy_budget_epsilon,
            budget_delta=settings.privacy_budget_delta,
        )
        runner = NodeRunner(
            client, data, settings.state_dir, device, me.name, guard, workers=workers
        )
        log.info("node %s on %s polling %s", me.name, platform.node(), settings.aggregator_url)
        try:
            return runner.run(settings.poll_wait_s, settings.exit_when_done)
        except ProtocolMismatchError as exc:  # the aggregator was upgraded under this node
            print(f"fedseg-node: stopped: {exc}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    raise SystemExit(main())
