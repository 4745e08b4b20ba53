"""Bytes of a sparse update on the wire, next to the dense update and protocol 2's encoding.

One full-size SegResNet delta (4.7 M parameters, random values) goes through fedseg's own
SVT release and partial sharing at each fraction; the update file is built exactly as a
node uploads it (``shared.tensors.update_bytes``). The baseline in the same run is
protocol 2's layout, int64 indices plus float32 values per entry. Target (issue 13):
bytes <= 1.15 * f * dense + 64 KiB.

    python -m benchmarks.sparse_wire [--fractions 0.01 0.1 0.3]
"""

from __future__ import annotations

import argparse

import torch

from shared.model import ModelConfig, initial_state
from shared.privacy.partial import partial_share
from shared.privacy.svt import svt_release
from shared.privacy.types import SparseTensor
from shared.schemas import SelectionScope, UpdateManifest
from shared.tensors import update_bytes

SLACK = 64 * 1024


def _manifest(sparse: dict[str, SparseTensor]) -> UpdateManifest:
    return UpdateManifest(
        run_id=1, round=1, task_nonce="n" * 16, base_model="0" * 64, num_samples=1,
        sparse=sorted(sparse),
    )  # fmt: skip


def protocol_2_bytes(sparse: dict[str, SparseTensor]) -> int:
    """What protocol 2 sent: 8 bytes of index and 4 of value per entry (plus headers)."""
    flat = {}
    for name, part in sparse.items():
        flat[name + "::indices"] = part.indices
        flat[name + "::values"] = part.values
    return len(update_bytes(flat, _manifest({})))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.1, 0.3])
    args = parser.parse_args(argv)
    generator = torch.Generator().manual_seed(0)
    delta = {
        name: torch.randn(t.shape, generator=generator) * 1e-3
        for name, t in initial_state(ModelConfig(), seed=0).items()
        if t.is_floating_point()
    }
    dense = len(update_bytes(delta, _manifest({})))
    print(f"dense update: {dense:,} bytes ({sum(t.numel() for t in delta.values()):,} values)")
    header = (
        f"{'release':<16} {'f':>5} {'bytes':>12} {'x dense':>8} {'target':>12} "
        f"{'protocol 2':>12} {'x p2':>6}  met"
    )
    print(header)
    print("-" * len(header))
    failed = False
    for fraction in args.fractions:
        releases = {
            "svt": svt_release(delta, fraction, 1e5, 0.01, None, generator)[0],
            "partial (model)": partial_share(delta, fraction, SelectionScope.MODEL, None),
        }
        for label, sparse in releases.items():
            sent = len(update_bytes({}, _manifest(sparse), sparse))
            target = 1.15 * fraction * dense + SLACK
            old = protocol_2_bytes(sparse)
            met = sent <= target
            failed |= not met
            print(
                f"{label:<16} {fraction:>5g} {sent:>12,} {sent / dense:>8.3f} {target:>12,.0f} "
                f"{old:>12,} {sent / old:>6.3f}  {'yes' if met else 'NO'}"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
