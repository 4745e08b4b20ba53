"""The demo consortium's own held-out cases: the final global model scored on public data.

Under a DP policy nodes withhold (or noise) the Dice they measure, so the demo scores the
final model itself on synthetic cases that no node trains on, as a consortium would on
its shared validation set (Li et al. 2019 used one of 43 BraTS cases).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import torch
from safetensors.torch import load as load_safetensors  # no pickle: tensors and JSON only

from services.node.data.layout import find_local_cases, load_source
from services.node.data.synthetic_sites import write_site
from services.node.evaluation import Validation, validate
from shared.model import ModelConfig, build_model
from shared.schemas import API_PREFIX

HOLDOUT_FOLDER = "consortium-holdout"


def write_holdout(data_dir: Path, site_index: int, cases: int, edge: int, seed: int) -> Path:
    """Synthetic cases of a site no node has, in ``data_dir/consortium-holdout``."""
    folder = data_dir / HOLDOUT_FOLDER
    write_site(folder, site_index, cases, (edge,) * 3, seed)
    return folder


def score_model(
    admin: httpx.Client,
    sha256: str,
    config: ModelConfig,
    folder: Path,
    crop: int,
    *,
    hd95: bool,
) -> tuple[Validation, int]:
    """Download model ``sha256`` with the admin certificate and validate it on ``folder``."""
    response = admin.get(f"{API_PREFIX}/models/{sha256}")
    response.raise_for_status()
    model = build_model(config)
    model.load_state_dict(load_safetensors(response.content))
    cases = [load_source(source) for source in find_local_cases(folder)]
    device = torch.device("cpu")
    return validate(model, cases, (crop,) * 3, device, hd95=hd95), len(cases)
