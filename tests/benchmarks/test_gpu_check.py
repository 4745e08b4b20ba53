"""Tests of the GPU check's CPU-side behaviour (the CUDA path runs on GPU machines only)."""

from __future__ import annotations

import pytest
import torch

from benchmarks.gpu_check import amp_step, main
from shared.model import ModelConfig, build_model


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_gpu_check_without_cuda_says_so_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0

    assert capsys.readouterr().out == (
        "gpu_check: no CUDA device on this machine (torch.cuda.is_available() is False); "
        "nothing to check.\n"
    )


@pytest.mark.parametrize("argv", [["--steps", "0"], ["--size", "100"], ["--batch", "0"]])
def test_gpu_check_rejects_bad_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)

    assert exit_info.value.code == 2


def test_amp_step_trains_on_cpu_in_full_precision() -> None:
    model = build_model(ModelConfig(init_filters=8, blocks_down=(1, 1), blocks_up=(1,)))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn((1, 4, 8, 8, 8), generator=generator)
    labels = (torch.rand((1, 3, 8, 8, 8), generator=generator) > 0.5).float()
    before = [p.detach().clone() for p in model.parameters()]

    loss = amp_step(model, optimizer, scaler, images, labels)

    assert 0.0 < loss < 1.0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
