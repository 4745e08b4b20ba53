"""Which tensors a policy keeps on the node: exact names or full-match regular expressions."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from shared.errors import ConfigurationError


def compile_patterns(patterns: Sequence[str]) -> list[re.Pattern[str]]:
    """Compile every pattern, or raise ConfigurationError naming the first invalid one."""
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as err:
            raise ConfigurationError(
                f"exclude pattern {pattern!r} is not a valid regular expression: {err}"
            ) from err
    return compiled


def excluded_names(names: Iterable[str], patterns: Sequence[str]) -> set[str]:
    """The names equal to a pattern or fully matched by it (``re.fullmatch``).

    A full match, not a search: ``"conv"`` excludes only a tensor named exactly ``conv``;
    ``"conv.*"`` excludes every name that starts with ``conv``.
    """
    compiled = compile_patterns(patterns)
    literal = set(patterns)
    return {name for name in names if name in literal or any(rx.fullmatch(name) for rx in compiled)}
