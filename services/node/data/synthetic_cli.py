"""`fedseg-synth`: write one site's synthetic BraTS-layout cases as NIfTI files."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from services.node.data.synthetic_sites import write_site
from shared.errors import FedsegError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedseg-synth",
        description="Write deterministic synthetic BraTS-layout cases for one site.",
    )
    parser.add_argument("--out", type=Path, required=True, help="root folder of the site's cases")
    parser.add_argument("--site", type=int, required=True, help="site index k (0, 1, ...)")
    parser.add_argument("--cases", type=int, required=True, help="number of cases to write")
    parser.add_argument("--shape", type=int, nargs=3, default=[64, 64, 64], metavar=("D", "H", "W"))
    parser.add_argument("--seed", type=int, default=0, help="seed of the whole data set")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns 0 on success, 1 on bad arguments or an unwritable folder."""
    args = _parser().parse_args(argv)
    depth, height, width = args.shape
    try:
        files = write_site(args.out, args.site, args.cases, (depth, height, width), args.seed)
    except (ValueError, OSError, FedsegError) as error:
        print(f"fedseg-synth: {error}", file=sys.stderr)
        return 1
    print(f"Site {args.site}: {len(files)} cases ready under {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
