"""The benchmark's cohort as the nodes see it: every site's training and validation split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmarks.cohort import write_cohort
from benchmarks.quality.config import QualityConfig
from services.node.data.cases import Case
from services.node.data.layout import load_local_split


@dataclass(frozen=True)
class SiteData:
    """One site's cases (images [4, D, H, W], labels [3, D, H, W]) split as its node does."""

    name: str
    train: list[Case]
    val: list[Case]


def load_sites(config: QualityConfig, root: Path) -> list[SiteData]:
    """Write (or reuse) the cohort under `root` and load every site's split as a node would."""
    sites = []
    for site in write_cohort(root, config.cohort):
        train, val = load_local_split(site.root, config.val_fraction, config.plan.seed)
        if not val:
            raise ValueError(f"{site.name} has no validation case; raise val_fraction")
        sites.append(SiteData(site.name, train, val))
    return sites
