"""Exclusion patterns: exact names and full-match regular expressions."""

from __future__ import annotations

import re

import pytest

from shared.errors import ConfigurationError
from shared.privacy.exclusion import excluded_names

NAMES = ["conv_init.weight", "down_layers.0.conv1.weight", "down_layers.0.conv1.bias", "norm.w"]


def test_exclusion_by_exact_name() -> None:
    assert excluded_names(NAMES, ["norm.w"]) == {"norm.w"}


def test_exclusion_by_regex_needs_a_full_match() -> None:
    assert excluded_names(NAMES, ["conv"]) == set()
    assert excluded_names(NAMES, [r"down_layers\.0\..*"]) == {
        "down_layers.0.conv1.weight",
        "down_layers.0.conv1.bias",
    }
    assert excluded_names(NAMES, [r".*\.bias", "conv_init.weight"]) == {
        "down_layers.0.conv1.bias",
        "conv_init.weight",
    }


def test_exclusion_of_nothing() -> None:
    assert excluded_names(NAMES, []) == set()


def test_exclusion_rejects_an_invalid_regex_by_name() -> None:
    with pytest.raises(re.error) as reason:
        re.compile("layer(")
    message = f"exclude pattern 'layer(' is not a valid regular expression: {reason.value}"
    with pytest.raises(ConfigurationError, match="^" + re.escape(message) + "$"):
        excluded_names(NAMES, ["norm.w", "layer("])
