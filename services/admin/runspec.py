"""Build a ``RunCreate`` from ``create-run``'s JSON spec and flags (flags win)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shared.errors import ConfigurationError
from shared.schemas import RunCreate

_FLAGS = {
    "name": "--name",
    "rounds": "--rounds",
    "expected_nodes": "--nodes",
    "min_nodes": "--min-nodes",
    "round_timeout_s": "--timeout",
    "deadline_policy": "--deadline-policy",
    "max_round_attempts": "--max-attempts",
    "model.init_filters": "--init-filters",
    "plan.max_steps": "--steps",
    "plan.learning_rate": "--lr",
    "plan.crop_size": "--crop",
    "privacy.mechanism": "--privacy",
}
"""Which flag sets a field, so an error can name what the operator typed."""


def run_request(args: argparse.Namespace) -> RunCreate:
    """Merge ``--spec``, ``--privacy-json`` and the flags into a validated run request."""
    spec = _json_object(args.spec, "--spec")
    privacy = {**spec.get("privacy", {}), **_json_object(args.privacy_json, "--privacy-json")}
    crop = None if args.crop is None else _crop(args.crop)
    top = {
        "name": args.name,
        "rounds": args.rounds,
        "expected_nodes": args.nodes,
        "min_nodes": args.min_nodes,
        "round_timeout_s": args.timeout,
        "deadline_policy": args.deadline_policy,
        "max_round_attempts": args.max_attempts,
        "seed": args.seed,
    }
    nested = {
        "model": {"init_filters": args.init_filters},
        "plan": {
            "local_epochs": args.epochs,
            "max_steps": args.steps,
            "learning_rate": args.lr,
            "batch_size": args.batch_size,
            "crop_size": crop,
            "seed": args.seed,
            "hd95": args.hd95,
        },
        "privacy": {
            "mechanism": args.privacy,
            "fraction": args.fraction,
            "clip": args.clip,
            "epsilon": args.epsilon,
            "threshold": args.threshold,
            "noise_multiplier": args.noise_multiplier,
            "l2_clip": args.l2_clip,
            "delta": args.delta,
            "sample_rate": args.sample_rate,
            "target_epsilon": args.target_epsilon,
            "metrics": args.metrics,
            "metrics_epsilon": args.metrics_epsilon,
            "exclude": args.exclude,
        },
        "aggregation": {
            "name": args.strategy,
            "trim_fraction": args.trim_fraction,
            "max_norm": args.max_norm,
            "server_lr": args.server_lr,
        },
    }
    merged: dict[str, Any] = {**spec, **_given(top)}
    for key, values in nested.items():
        base = privacy if key == "privacy" else spec.get(key, {})
        if not isinstance(base, dict):
            raise ConfigurationError(f"--spec: {key} must be a JSON object")
        section = {**base, **_given(values)}
        if section:
            merged[key] = section
    try:
        return RunCreate.model_validate(merged)
    except ValidationError as exc:
        raise ConfigurationError(f"invalid run: {_describe(exc)}") from None


def _given(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _crop(sizes: list[int]) -> tuple[int, int, int]:
    if len(sizes) == 1:
        return (sizes[0],) * 3
    if len(sizes) == 3:
        return sizes[0], sizes[1], sizes[2]
    raise ConfigurationError(f"--crop takes one edge or three (D H W), got {len(sizes)} numbers")


def _json_object(text: str | None, flag: str) -> dict[str, Any]:
    """``text`` is JSON, or ``@path`` of a JSON file; it must hold an object."""
    if text is None:
        return {}
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise ConfigurationError(f"{flag}: cannot read {text[1:]}: {exc.strerror}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{flag} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigurationError(f"{flag} must be a JSON object, got {type(value).__name__}")
    return value


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        flag = _FLAGS.get(field)
        where = f"{field} ({flag})" if flag else field
        problems.append(f"{where}: {str(error['msg']).removeprefix('Value error, ')}")
    return "; ".join(problems)
