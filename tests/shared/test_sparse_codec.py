"""Sparse positions on the wire: exact round trips, near-entropy size, strict refusal."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shared import sparse_codec
from shared.errors import SpecMismatchError


def _positions(numel: int, fraction: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    k = round(numel * fraction)
    return np.sort(rng.choice(numel, k, replace=False)).astype(np.int64)


def _entropy_bytes(numel: int, k: int) -> float:
    """log2 C(numel, k) / 8: no encoding of a k-subset can do better on average."""
    return (math.lgamma(numel + 1) - math.lgamma(k + 1) - math.lgamma(numel - k + 1)) / (
        8 * math.log(2)
    )


@pytest.mark.parametrize("fraction", [0.0, 1e-4, 0.01, 0.1, 0.3, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_round_trip_and_size_near_the_entropy(fraction: float, seed: int) -> None:
    numel = 200_003
    positions = _positions(numel, fraction, seed)
    data = sparse_codec.encode(positions, numel)
    np.testing.assert_array_equal(sparse_codec.decode(data, positions.size, numel), positions)
    assert len(data) <= sparse_codec.bitmap_size(numel)
    if fraction <= 0.5:  # denser sets take the bitmap: 1 bit per entry, 1/32 of the values
        assert len(data) <= 1.15 * _entropy_bytes(numel, positions.size) + 64


def test_clustered_positions_and_large_gaps_round_trip() -> None:
    numel = 10**7
    positions = np.array([0, 1, 2, 3, 5_000_000, 9_999_998, 9_999_999], dtype=np.int64)
    data = sparse_codec.encode(positions, numel)
    assert data[0] == sparse_codec.RICE
    np.testing.assert_array_equal(sparse_codec.decode(data, 7, numel), positions)


def test_dense_selections_use_the_bitmap_and_sparse_ones_rice() -> None:
    numel = 10_000
    assert sparse_codec.encode(_positions(numel, 0.6, 0), numel)[0] == sparse_codec.BITMAP
    assert sparse_codec.encode(_positions(numel, 0.01, 0), numel)[0] == sparse_codec.RICE


@pytest.mark.parametrize(
    ("positions", "message"),
    [([3, 3], "strictly increasing"), ([4, 2], "strictly increasing"), ([0, 10], r"\[0, 10\)"),
     ([-1], r"\[0, 10\)")],
)  # fmt: skip
def test_the_encoder_refuses_what_the_decoder_would(positions: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sparse_codec.encode(np.array(positions, dtype=np.int64), 10)


def _rice(numel: int = 100_000) -> tuple[bytes, int, int]:
    positions = _positions(numel, 0.01, 3)
    data = sparse_codec.encode(positions, numel)
    assert data[0] == sparse_codec.RICE
    return data, positions.size, numel


def _patched(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


def _unary_padding_set(data: bytes) -> bytes:
    unary_bits = int.from_bytes(data[10:18], "little")
    assert unary_bits % 8, "this stream's unary part has no padding to spoil"
    at = 18 + unary_bits // 8
    return _patched(data, at, bytes([data[at] | (1 << (unary_bits % 8))]))


def test_malformed_rice_streams_are_refused() -> None:
    data, count, numel = _rice()
    cases = {
        "are cut short": b"\x02\x05",
        "their header calls for": data[:-1],
        "their header calls for ": data + b"\x00",
        "values were sent": data,  # with the wrong count, below
        "Rice parameter of 41": _patched(data, 1, bytes([41])),
        "set padding bits": _unary_padding_set(data),
    }
    for message, blob in cases.items():
        announced = count + 1 if message == "values were sent" else count
        with pytest.raises(SpecMismatchError, match=message.strip()):
            sparse_codec.decode(blob, announced, numel, "w")


def test_a_stream_reaching_past_the_tensor_is_refused() -> None:
    data, count, numel = _rice()
    with pytest.raises(SpecMismatchError, match=r"positions reach entry \d+ of a tensor of"):
        sparse_codec.decode(data, count, numel - 600, "w")


def test_more_bytes_than_a_bitmap_are_refused_before_any_work() -> None:
    with pytest.raises(SpecMismatchError, match="more than a bitmap of 80 entries"):
        sparse_codec.decode(b"\x02" + b"\x00" * 40, 1, 80, "w")
    with pytest.raises(SpecMismatchError, match="announce 81 values for a tensor of 80"):
        sparse_codec.decode(b"\x01" + b"\xff" * 10, 81, 80, "w")
    with pytest.raises(SpecMismatchError, match="are empty"):
        sparse_codec.decode(b"", 0, 80, "w")


def _rice_blob(b: int, count: int, unary: list[int], low: list[int]) -> bytes:
    header = bytes([sparse_codec.RICE, b]) + count.to_bytes(8, "little")
    header += len(unary).to_bytes(8, "little")
    pack = lambda bits: np.packbits(np.array(bits, np.uint8), bitorder="little").tobytes()  # noqa: E731
    return header + (pack(unary) if unary else b"") + (pack(low) if low else b"")


def test_gaps_that_would_overflow_or_pass_the_tensor_are_refused() -> None:
    numel = 1 << 20
    b = numel.bit_length()  # 21: the largest parameter allowed
    with pytest.raises(SpecMismatchError, match="hold a gap past the tensor"):
        sparse_codec.decode(_rice_blob(b, 1, [0], [1] * b), 1, numel, "w")
    with pytest.raises(SpecMismatchError, match="more than a tensor of"):
        sparse_codec.decode(_rice_blob(b + 1, 1, [0], [0] * (b + 1)), 1, numel, "w")
    with pytest.raises(SpecMismatchError, match="hold a gap past the tensor"):
        sparse_codec.decode(_rice_blob(5, 1, [1] * 200 + [0], [0] * 5), 1, 4096, "w")
    with pytest.raises(SpecMismatchError, match="hold gaps but no values were sent"):
        sparse_codec.decode(_rice_blob(0, 0, [1, 1], []), 0, 1000, "w")
