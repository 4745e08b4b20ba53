"""Time the privacy filters on one 4.7 M-parameter update, on one CPU thread.

fedseg's SVT, Gaussian and partial-sharing releases run on the full-size SegResNet delta
(random values); the baseline in the same run is a torch port of the public NVIDIA SVT
filter's structure (NVFlare ``SVTPrivacy``): a re-drawing loop with Python lists,
selection with replacement, noise added inside the clip and a per-tensor rebuild. The
baseline is a timing reference only: it is not differentially private as configured.

    python -m benchmarks.privacy_filters [--repeats 7] [--fraction 0.1]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch

from shared.model import ModelConfig, initial_state
from shared.privacy.gaussian import gaussian_release
from shared.privacy.partial import partial_share
from shared.privacy.svt import svt_release
from shared.schemas import SelectionScope

TARGET_S = 0.15


def nvidia_style_svt_baseline(
    delta: dict[str, torch.Tensor],
    fraction: float,
    epsilon: float,
    noise_var: float,
    gamma: float,
    tau: float,
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """TIMING BASELINE ONLY, defects kept on purpose: do not use to protect anything."""
    names = sorted(delta)
    delta_w = torch.cat([delta[name].reshape(-1) for name in names])
    n_upload = min(math.ceil(delta_w.numel() * fraction), delta_w.numel())
    threshold = tau + _laplace(1, gamma * 2.0 / epsilon, generator).item()
    eps_2 = epsilon * (2.0 * n_upload) ** (2.0 / 3.0)
    lambda_nu = gamma * 4.0 * n_upload / eps_2
    accepted: list[int] = []
    candidate_idx = torch.arange(delta_w.numel())
    clipped_w = delta_w.clamp(-gamma, gamma).abs()
    while len(accepted) < n_upload:  # re-queries the rejected ones with fresh noise
        nu_i = _laplace(candidate_idx.numel(), lambda_nu, generator)
        above = clipped_w[candidate_idx] + nu_i >= threshold
        accepted += candidate_idx[above].tolist()
        candidate_idx = candidate_idx[~above]
    chosen = torch.tensor(accepted)[
        torch.randint(len(accepted), (n_upload,), generator=generator)  # with replacement
    ]
    noise = _laplace(chosen.numel(), gamma * 2.0 / noise_var, generator)
    delta_w[chosen] = (delta_w[chosen] + noise).clamp(-gamma, gamma)  # noise inside the clip
    delta_w[candidate_idx] = 0.0  # only the never-passed are zeroed: passed-but-undrawn go raw
    out, start = {}, 0
    for name in names:
        size = delta[name].numel()
        out[name] = delta_w[start : start + size].reshape(delta[name].shape).clone()
        start += size
    return out


def _laplace(count: int, scale: float, generator: torch.Generator) -> torch.Tensor:
    u = torch.rand(count, generator=generator) - 0.5
    return -scale * u.sign() * torch.log1p(-2.0 * u.abs())


def _median_seconds(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--epsilon", type=float, default=10.0, help="SVT per-round epsilon")
    parser.add_argument("--gamma", type=float, default=1e-3, help="SVT clip")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    shapes = {k: v.shape for k, v in initial_state(ModelConfig(), 0).items()}
    gen = torch.Generator().manual_seed(0)
    delta = {k: torch.randn(s, generator=gen) * 1e-3 for k, s in shapes.items()}
    n = sum(t.numel() for t in delta.values())
    print(f"update: {len(delta)} tensors, {n:,} parameters; torch threads: 1; "
          f"median of {args.repeats}")  # fmt: skip
    print(f"SVT: fraction {args.fraction}, epsilon {args.epsilon}, gamma {args.gamma}; "
          "Gaussian: S 1.0, sigma 1.0\n")  # fmt: skip

    runs: dict[str, Callable[[], object]] = {
        "fedseg svt_release": lambda: svt_release(
            delta, args.fraction, args.epsilon, args.gamma, None, gen
        ),
        "fedseg gaussian_release": lambda: gaussian_release(delta, 1.0, 1.0, gen),
        "fedseg partial_share (model)": lambda: partial_share(
            delta, args.fraction, SelectionScope.MODEL, args.gamma
        ),
        "BASELINE NVIDIA-style SVT (defective)": lambda: nvidia_style_svt_baseline(
            delta, args.fraction, args.epsilon, 0.1, args.gamma, args.gamma / 10, gen
        ),
    }
    seconds = {label: _median_seconds(run, args.repeats) for label, run in runs.items()}
    print(f"{'filter':<40} {'seconds':>8} {'Mparams/s':>10}")
    for label, s in seconds.items():
        print(f"{label:<40} {s:>8.3f} {n / s / 1e6:>10.1f}")
    baseline = seconds["BASELINE NVIDIA-style SVT (defective)"]
    svt, gauss = seconds["fedseg svt_release"], seconds["fedseg gaussian_release"]
    print(f"\nbaseline / fedseg svt: {baseline / svt:.1f}x; "
          f"baseline / fedseg gaussian: {baseline / gauss:.1f}x")  # fmt: skip
    verdict = "met" if max(svt, gauss) < TARGET_S else "MISSED"
    print(f"target: svt and gaussian under {TARGET_S} s each on one thread: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
