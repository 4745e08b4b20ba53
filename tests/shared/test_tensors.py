"""Update files: dense and sparse tensors against the model's spec, manifests, no pickle."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from shared.errors import MalformedUpdateError, NonFiniteError, SpecMismatchError
from shared.privacy.types import SparseTensor
from shared.schemas import UpdateManifest
from shared.tensors import (
    check_against_spec,
    iter_update,
    read_manifest,
    spec_of,
    update_bytes,
)

BASE = {"a.weight": torch.zeros(2, 3), "b.bias": torch.zeros(4)}
SPEC = spec_of(BASE)


def _manifest(**kw: object) -> UpdateManifest:
    fields: dict[str, object] = {
        "run_id": 1,
        "round": 1,
        "task_nonce": "n" * 32,
        "base_model": "0" * 64,
        "num_samples": 1,
    }
    fields.update(kw)
    return UpdateManifest.model_validate(fields)


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "update.safetensors"
    path.write_bytes(data)
    return path


def _sparse(indices: list[int], values: list[float], shape: tuple[int, ...]) -> SparseTensor:
    return SparseTensor(torch.tensor(indices, dtype=torch.int64), torch.tensor(values), shape)


def test_sparse_update_round_trips(tmp_path: Path) -> None:
    part = _sparse([1, 5], [0.5, -0.25], (2, 3))
    manifest = _manifest(sparse=("a.weight",))
    path = _write(tmp_path, update_bytes({"b.bias": torch.ones(4)}, manifest, {"a.weight": part}))
    assert read_manifest(path) == manifest
    check_against_spec(path, SPEC, manifest.sparse, manifest.excluded)
    parts = dict(iter_update(path, manifest, SPEC))
    sparse = parts["a.weight"]
    assert isinstance(sparse, SparseTensor)
    torch.testing.assert_close(
        sparse.to_dense(), torch.tensor([[0.0, 0.5, 0.0], [0.0, 0.0, -0.25]])
    )
    torch.testing.assert_close(parts["b.bias"], torch.ones(4))


def test_sparse_update_costs_about_its_fraction_in_bytes() -> None:
    dense = {"w": torch.randn(100_000)}
    k = 10_000
    idx = torch.sort(torch.randperm(100_000)[:k]).values
    sparse = {"w": SparseTensor(idx, torch.randn(k), (100_000,))}
    full = len(update_bytes(dense, _manifest()))
    part = len(update_bytes({}, _manifest(sparse=("w",)), sparse))
    # 10 % of the values (4 bytes each) plus Rice-coded positions (~0.5 bit per entry of
    # the tensor): about 11.5 % of dense.
    assert part < 0.12 * full


def test_excluded_tensor_is_absent_and_accepted(tmp_path: Path) -> None:
    manifest = _manifest(excluded=("b.bias",))
    path = _write(tmp_path, update_bytes({"a.weight": torch.ones(2, 3)}, manifest))
    check_against_spec(path, SPEC, manifest.sparse, manifest.excluded)
    assert [name for name, _ in iter_update(path, manifest, SPEC)] == ["a.weight"]


def _crafted(tmp_path: Path, positions: torch.Tensor, values: torch.Tensor) -> Path:
    """An update whose sparse part is written by hand, as a hostile node could."""
    from shared.tensors import SPARSE_POSITIONS, SPARSE_VALUES, to_bytes

    manifest = _manifest(sparse=("a.weight",))
    flat = {
        "b.bias": torch.ones(4),
        "a.weight" + SPARSE_POSITIONS: positions,
        "a.weight" + SPARSE_VALUES: values,
    }
    return _write(tmp_path, to_bytes(flat, {"fedseg.manifest": manifest.model_dump_json()}))


def _u8(*data: int) -> torch.Tensor:
    return torch.tensor(data, dtype=torch.uint8)


@pytest.mark.parametrize(
    ("positions", "values", "message"),
    [
        (_u8(1, 0b1000_0001), [1.0, 1.0], "positions bitmap sets bits past the tensor's end"),
        (_u8(1, 0b0000_0001), [1.0, 1.0], "positions bitmap marks 1 entries but 2 values"),
        (_u8(1, 0b11, 0), [1.0, 1.0], "positions take 3 bytes, more than a bitmap of 6"),
        (_u8(9, 0b11), [1.0, 1.0], "positions use unknown scheme 9"),
        (_u8(1, 0b11), [1.0, float("nan")], "tensor 'a.weight::values' holds 1 non-finite"),
        (torch.tensor([0, 1]), [1.0, 1.0], "sparse tensor 'a.weight': positions must be uint8"),
    ],
)
def test_bad_sparse_parts_are_rejected(
    tmp_path: Path, positions: torch.Tensor, values: list[float], message: str
) -> None:
    path = _crafted(tmp_path, positions, torch.tensor(values))
    manifest = _manifest(sparse=("a.weight",))
    with pytest.raises((SpecMismatchError, NonFiniteError)) as caught:
        check_against_spec(path, SPEC, manifest.sparse, manifest.excluded)
    assert message in str(caught.value)


def test_sparse_values_of_wrong_dtype_rejected(tmp_path: Path) -> None:
    path = _crafted(tmp_path, _u8(1, 0b11), torch.tensor([1.0, 2.0], dtype=torch.float64))
    manifest = _manifest(sparse=("a.weight",))
    with pytest.raises(SpecMismatchError, match="values must be float32"):
        check_against_spec(path, SPEC, manifest.sparse, manifest.excluded)


def test_manifest_naming_unknown_tensors_rejected(tmp_path: Path) -> None:
    manifest = _manifest(excluded=("c.weight",))
    path = _write(tmp_path, update_bytes(BASE, manifest))
    with pytest.raises(
        SpecMismatchError,
        match=r"manifest names tensors the global model does not have: 'c\.weight'",
    ):
        check_against_spec(path, SPEC, manifest.sparse, manifest.excluded)


def test_tensor_both_sparse_and_excluded_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, update_bytes(BASE, _manifest()))
    with pytest.raises(MalformedUpdateError, match=r"tensors both sparse and excluded: 'b\.bias'"):
        check_against_spec(path, SPEC, ("b.bias",), ("b.bias",))


def test_update_file_holds_no_pickle(tmp_path: Path) -> None:
    data = update_bytes(BASE, _manifest())
    assert b"\x80\x04" not in data[:64]  # no pickle protocol header
    header_len = int.from_bytes(data[:8], "little")
    assert data[8:9] == b"{"
    assert data[8 + header_len - 1 : 8 + header_len].strip() in (b"}", b"")
