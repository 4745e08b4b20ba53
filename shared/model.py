"""The segmentation network: MONAI SegResNet as in Myronenko 2018 and Li et al. 2019."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    import torch

# torch and MONAI are imported where a network is built, so that reading a ModelConfig
# (the wire schemas, the operator CLI) does not pay seconds of import time.

REGIONS: tuple[str, str, str] = ("TC", "WT", "ET")
"""Output channels, in order: tumour core, whole tumour, enhancing tumour."""


MAX_PARAMETERS = 200_000_000
"""About 800 MB of float32: far past any brain-tumour SegResNet (the paper's is 4.7 M)."""
BlockCount = Annotated[int, Field(ge=1, le=16)]


class ModelConfig(BaseModel):
    """Architecture of the shared model; the defaults are the paper's (~4.7 M parameters)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    init_filters: int = Field(default=16, ge=8, le=128, multiple_of=8)
    """A multiple of 8: SegResNet's GroupNorm uses 8 groups."""
    blocks_down: tuple[BlockCount, ...] = Field(default=(1, 2, 2, 4), min_length=1, max_length=6)
    blocks_up: tuple[BlockCount, ...] = Field(default=(1, 1, 1), min_length=0, max_length=5)
    in_channels: int = Field(default=4, ge=1, le=16)
    out_channels: int = Field(default=3, ge=1, le=16)
    dropout_prob: float | None = Field(default=None, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _buildable(self) -> ModelConfig:
        if len(self.blocks_up) != len(self.blocks_down) - 1:
            raise ValueError(
                "blocks_up must have one entry fewer than blocks_down, got "
                f"{len(self.blocks_up)} and {len(self.blocks_down)}"
            )
        if (estimate := approximate_parameters(self)) > MAX_PARAMETERS:
            raise ValueError(
                f"this architecture has about {estimate / 1e6:.0f} M parameters, more than "
                f"the {MAX_PARAMETERS / 1e6:.0f} M every node and the aggregator must hold; "
                "use fewer levels, blocks or init_filters"
            )
        return self


def approximate_parameters(config: ModelConfig) -> int:
    """SegResNet's 3x3x3 convolution weights, level by level (within a few % of the total).

    Lets a run's model be refused before anything is built: the aggregator builds the
    initial model from the request, every node builds it again.
    """
    width = [config.init_filters * 2**level for level in range(len(config.blocks_down))]
    total = 27 * config.in_channels * width[0]
    for level, blocks in enumerate(config.blocks_down):
        total += blocks * 2 * 27 * width[level] ** 2
        if level:
            total += 27 * width[level - 1] * width[level]
    for level, blocks in enumerate(config.blocks_up):
        below = width[-1 - level]
        total += below * below // 2 + blocks * 2 * 27 * (below // 2) ** 2
    return int(total + width[0] * config.out_channels)


def warm_up() -> None:
    """Import what ``build_model`` needs (MONAI, seconds of import) ahead of its first use."""
    import monai.networks.nets.segresnet  # noqa: F401


def build_model(config: ModelConfig) -> torch.nn.Module:
    """Build SegResNet: input [B, in_channels, D, H, W] -> logits [B, out_channels, D, H, W].

    D, H and W must be divisible by 2 ** (len(blocks_down) - 1).
    """
    from monai.networks.nets.segresnet import SegResNet

    if len(config.blocks_up) != len(config.blocks_down) - 1:
        raise ValueError(
            "blocks_up must have one entry fewer than blocks_down, got "
            f"{len(config.blocks_up)} and {len(config.blocks_down)}"
        )
    return SegResNet(
        spatial_dims=3,
        init_filters=config.init_filters,
        in_channels=config.in_channels,
        out_channels=config.out_channels,
        dropout_prob=config.dropout_prob,
        blocks_down=config.blocks_down,
        blocks_up=config.blocks_up,
    )


def initial_state(config: ModelConfig, seed: int) -> dict[str, torch.Tensor]:
    """The run's first global model: a seeded initialisation, identical on every machine."""
    import torch

    # fork_rng keeps the process-wide generator untouched; MONAI layers draw from it.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(config)
    return {name: t.detach().clone().contiguous() for name, t in model.state_dict().items()}


def divisor(config: ModelConfig) -> int:
    """Every spatial size fed to the model must be a multiple of this."""
    return int(2 ** (len(config.blocks_down) - 1))
