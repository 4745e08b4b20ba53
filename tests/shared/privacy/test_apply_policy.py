"""apply_policy: validation messages, exclusion, non-float withholding, each mechanism's spend."""

from __future__ import annotations

import re

import pytest
import torch

from shared.errors import ConfigurationError, NonFiniteError
from shared.privacy.apply import PARTIAL_ACCOUNTING, apply_policy
from shared.privacy.gaussian import gaussian_epsilon
from shared.privacy.svt import ACCOUNTING as SVT_ACCOUNTING
from shared.schemas import Mechanism, PrivacyPolicy, SelectionScope


def _exact(message: str) -> str:
    return "^" + re.escape(message) + "$"


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _delta() -> dict[str, torch.Tensor]:
    g = _gen(42)
    return {
        "enc.weight": torch.randn(8, 4, generator=g),
        "enc.bias": torch.randn(8, generator=g),
        "head.weight": torch.randn(3, 8, generator=g),
        "bn.num_batches_tracked": torch.tensor(12),
    }


def test_apply_none_releases_float_tensors_and_withholds_non_float_ones() -> None:
    delta = _delta()
    release = apply_policy(delta, PrivacyPolicy(), _gen())
    assert set(release.dense) == {"enc.weight", "enc.bias", "head.weight"}
    assert release.sparse == {}
    for name, tensor in release.dense.items():
        assert torch.equal(tensor, delta[name])
    assert release.excluded == ("bn.num_batches_tracked",)
    assert release.notes == (
        "non-float tensors are withheld (no mechanism protects them): bn.num_batches_tracked",
    )
    assert release.spend.mechanism is Mechanism.NONE
    assert release.spend.epsilon is None
    assert release.spend.accounting == "no protection"


def test_apply_excludes_tensors_by_exact_name_and_regex() -> None:
    policy = PrivacyPolicy(exclude=("enc.bias", r"head\..*", "nothing.here"))
    release = apply_policy(_delta(), policy, _gen())
    assert set(release.dense) == {"enc.weight"}
    assert release.excluded == ("enc.bias", "head.weight", "bn.num_batches_tracked")
    assert release.notes == (
        "exclude pattern 'nothing.here' matched no tensor",
        "withheld by the policy's exclude list: enc.bias, head.weight",
        "non-float tensors are withheld (no mechanism protects them): bn.num_batches_tracked",
    )


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (
            PrivacyPolicy(mechanism=Mechanism.SVT, epsilon=1.0),
            "the svt mechanism needs clip (gamma) > 0, but the policy has clip=None",
        ),
        (
            PrivacyPolicy(mechanism=Mechanism.SVT, clip=0.01),
            "the svt mechanism needs epsilon > 0, but the policy has epsilon=None",
        ),
        (
            PrivacyPolicy(mechanism=Mechanism.GAUSSIAN, l2_clip=1.0),
            "the gaussian mechanism needs noise_multiplier (sigma) > 0, "
            "but the policy has noise_multiplier=None",
        ),
        (
            PrivacyPolicy(mechanism=Mechanism.GAUSSIAN, noise_multiplier=1.0),
            "the gaussian mechanism needs l2_clip (S) > 0, but the policy has l2_clip=None",
        ),
        (
            PrivacyPolicy(exclude=("bad[",)),
            "exclude pattern 'bad[' is not a valid regular expression: "
            "unterminated character set at position 3",
        ),
    ],
)
def test_apply_rejects_an_incomplete_policy(policy: PrivacyPolicy, message: str) -> None:
    with pytest.raises(ConfigurationError, match=_exact(message)):
        apply_policy(_delta(), policy, _gen())


def test_apply_partial_is_sparse_and_claims_no_dp() -> None:
    policy = PrivacyPolicy(mechanism=Mechanism.PARTIAL, fraction=0.25, clip=0.5)
    release = apply_policy(_delta(), policy, _gen())
    assert release.dense == {}
    assert set(release.sparse) == {"enc.weight", "enc.bias", "head.weight"}
    assert sum(s.indices.numel() for s in release.sparse.values()) == 16  # ceil(0.25 * 64)
    assert all(
        float(s.values.abs().max()) <= 0.5 for s in release.sparse.values() if s.values.numel()
    )
    assert release.spend.epsilon is None
    assert release.spend.accounting == PARTIAL_ACCOUNTING
    assert release.spend.parameters == {
        "fraction": 0.25,
        "scope": "model",
        "clip": 0.5,
        "n": 64,
        "k": 16,
    }


def test_apply_svt_is_sparse_with_the_round_epsilon() -> None:
    policy = PrivacyPolicy(mechanism=Mechanism.SVT, fraction=0.1, clip=0.01, epsilon=2.0)
    release = apply_policy(_delta(), policy, _gen())
    assert release.dense == {}
    assert set(release.sparse) == {"enc.weight", "enc.bias", "head.weight"}
    assert sum(s.indices.numel() for s in release.sparse.values()) <= 7  # ceil(0.1 * 64)
    assert release.spend.mechanism is Mechanism.SVT
    assert release.spend.epsilon == 2.0
    assert release.spend.accounting == SVT_ACCOUNTING
    assert release.excluded == ("bn.num_batches_tracked",)


def test_apply_gaussian_is_dense_with_one_round_of_rdp() -> None:
    policy = PrivacyPolicy(
        mechanism=Mechanism.GAUSSIAN, noise_multiplier=1.5, l2_clip=1.0, delta=1e-6
    )
    release = apply_policy(_delta(), policy, _gen())
    assert set(release.dense) == {"enc.weight", "enc.bias", "head.weight"}
    assert all(t.dtype == torch.float32 for t in release.dense.values())
    assert release.spend.epsilon == gaussian_epsilon(1.5, 1, 1e-6)
    assert release.spend.delta == 1e-6


def test_apply_notes_settings_the_mechanism_ignores() -> None:
    policy = PrivacyPolicy(mechanism=Mechanism.PARTIAL, epsilon=1.0, scope=SelectionScope.TENSOR)
    release = apply_policy({"w": torch.ones(4)}, policy, _gen())
    assert release.notes == ("epsilon is set but the partial mechanism does not use it",)
    gaussian = PrivacyPolicy(
        mechanism=Mechanism.GAUSSIAN, noise_multiplier=1.0, l2_clip=1.0, scope=SelectionScope.TENSOR
    )
    assert apply_policy({"w": torch.ones(4)}, gaussian, _gen()).notes == (
        "scope is set but the gaussian mechanism does not use it",
    )


def test_apply_same_seed_gives_the_identical_release() -> None:
    policy = PrivacyPolicy(mechanism=Mechanism.SVT, fraction=0.2, clip=0.5, epsilon=5.0)
    first = apply_policy(_delta(), policy, _gen(5))
    again = apply_policy(_delta(), policy, _gen(5))
    for name, s in first.sparse.items():
        assert torch.equal(s.indices, again.sparse[name].indices)
        assert torch.equal(s.values, again.sparse[name].values)


@pytest.mark.parametrize(
    "policy",
    [
        PrivacyPolicy(mechanism=Mechanism.PARTIAL, clip=0.1),
        PrivacyPolicy(mechanism=Mechanism.SVT, fraction=1.0, clip=0.1, epsilon=1.0),
        PrivacyPolicy(mechanism=Mechanism.GAUSSIAN, noise_multiplier=1.0, l2_clip=0.1),
    ],
)
def test_apply_leaves_the_delta_untouched(policy: PrivacyPolicy) -> None:
    delta = _delta()
    copy = {name: t.clone() for name, t in delta.items()}
    apply_policy(delta, policy, _gen())
    for name, tensor in delta.items():
        assert torch.equal(tensor, copy[name])


def test_apply_refuses_non_finite_values() -> None:
    delta = {"w": torch.tensor([1.0, float("nan")])}
    with pytest.raises(
        NonFiniteError, match=_exact("tensor 'w' holds NaN or infinity; nothing is released")
    ):
        apply_policy(delta, PrivacyPolicy(), _gen())
