"""The quality benchmark's synthetic cohort: uneven sites with their own scanners, as NIfTIs.

Every site is a BraTS-layout folder written by
``services.node.data.synthetic_sites.write_site``: brain-like volumes with a necrotic core
inside an enhancing rim inside oedema, and per-site scanner differences (intensity scale,
contrast gamma, bias field, noise level, see ``site_profile``). Site sizes are drawn
unevenly (``uneven_site_sizes``), as in the public reproduction of Li et al. 2019 (3 to 77
cases per client). Equal arguments give byte-identical files; a folder written before with
the same arguments is reused as is.

    python -m benchmarks.cohort --out var/bench-quality/cohort [--cases 40] [--sites 4]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from services.node.data.brats import CaseFiles
from services.node.data.synthetic_sites import uneven_site_sizes, write_site
from services.node.data.synthetic_volumes import MIN_SIDE, site_profile


@dataclass(frozen=True)
class CohortConfig:
    """Size of the cohort: ``total_cases`` over ``num_sites`` sites of ``volume``^3 voxels."""

    num_sites: int = 4
    total_cases: int = 40
    volume: int = 40
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.num_sites <= 64:
            raise ValueError(f"num_sites must be in [1, 64], got {self.num_sites}")
        if self.total_cases < 2 * self.num_sites:
            raise ValueError(
                f"total_cases must be at least 2 per site ({2 * self.num_sites}), "
                f"got {self.total_cases}"
            )
        if self.volume < MIN_SIDE:
            raise ValueError(f"volume must be at least {MIN_SIDE} voxels, got {self.volume}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")


@dataclass(frozen=True)
class Site:
    """One hospital of the cohort: its name (``site-<k>``), data folder and case files."""

    name: str
    root: Path
    cases: list[CaseFiles]


def site_sizes(config: CohortConfig) -> list[int]:
    """Cases per site, uneven and summing to ``config.total_cases`` (deterministic by seed)."""
    return uneven_site_sizes(config.num_sites, config.total_cases, config.seed)


def write_cohort(root: Path, config: CohortConfig) -> list[Site]:
    """Write (or reuse) every site as ``root/site-<k>/<case folders>``, k from 1; return them.

    Site k draws its cases from ``site_profile(k)``, so each site keeps its scanner across
    cohorts of any size.
    """
    shape = (config.volume, config.volume, config.volume)
    sites = []
    for index, size in enumerate(site_sizes(config), start=1):
        name = f"site-{index}"
        files = write_site(root / name, index, size, shape, config.seed)
        sites.append(Site(name=name, root=root / name, cases=files))
    return sites


def describe(sites: Sequence[Site]) -> str:
    """A short table of the cohort: one line per site with its size and scanner profile."""
    lines = ["site     cases  bias   noise  scale (t1, t1ce, t2, flair)"]
    for index, site in enumerate(sites, start=1):
        profile = site_profile(index)
        scale = ", ".join(f"{value:.0f}" for value in profile.intensity_scale)
        lines.append(
            f"{site.name:<8} {len(site.cases):>5}  {profile.bias_field_strength:.2f}   "
            f"{profile.noise_std:.3f}  {scale}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cohort", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("var/bench-quality/cohort"))
    parser.add_argument("--sites", type=int, default=CohortConfig.num_sites)
    parser.add_argument("--cases", type=int, default=CohortConfig.total_cases)
    parser.add_argument("--volume", type=int, default=CohortConfig.volume)
    parser.add_argument("--seed", type=int, default=CohortConfig.seed)
    args = parser.parse_args(argv)
    try:
        config = CohortConfig(args.sites, args.cases, args.volume, args.seed)
    except ValueError as error:
        parser.error(str(error))
    sites = write_cohort(args.out, config)
    print(f"cohort of {config.total_cases} cases of {config.volume}^3 voxels in {args.out}")
    print(describe(sites))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
