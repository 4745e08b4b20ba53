"""Weights on the wire and at rest: safetensors only, checked against the model's spec.

Nothing here unpickles: safetensors stores raw little-endian buffers behind a JSON header,
so reading a file from another party can at worst fail, never execute code.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as _save_bytes

from shared import sparse_codec
from shared.errors import MalformedUpdateError, NonFiniteError, SpecMismatchError
from shared.privacy.types import SparseTensor
from shared.schemas import MANIFEST_KEY, UpdateManifest

_DTYPE_NAMES: dict[torch.dtype, str] = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
_CHUNK = 1 << 20
SPARSE_POSITIONS = "::positions"
SPARSE_VALUES = "::values"


@dataclass(frozen=True)
class TensorSpec:
    """Shape and safetensors dtype name of one tensor."""

    dtype: str
    shape: tuple[int, ...]


ModelSpec = Mapping[str, TensorSpec]


def spec_of(tensors: Mapping[str, torch.Tensor]) -> dict[str, TensorSpec]:
    """The spec every update to a model with these tensors must match."""
    return {
        name: TensorSpec(_DTYPE_NAMES[t.dtype], tuple(int(s) for s in t.shape))
        for name, t in tensors.items()
    }


def spec_of_file(path: Path) -> dict[str, TensorSpec]:
    """Spec read from a safetensors file's header, without loading any tensor."""
    with _open(path) as handle:
        return {
            name: TensorSpec(
                handle.get_slice(name).get_dtype(),
                tuple(handle.get_slice(name).get_shape()),
            )
            for name in handle.keys()  # noqa: SIM118 - safe_open has no __iter__
        }


def to_bytes(
    tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> bytes:
    """Serialise CPU-contiguous copies of ``tensors`` as safetensors bytes."""
    plain = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    return bytes(_save_bytes(plain, metadata=dict(metadata) if metadata else None))


def load_file(path: Path) -> dict[str, torch.Tensor]:
    """Load every tensor of a trusted local safetensors file (our own blob store)."""
    with _open(path) as handle:
        return {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118


def iter_tensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (name, tensor) one at a time, so a caller holds one tensor, not the model."""
    with _open(path) as handle:
        for name in handle.keys():  # noqa: SIM118
            yield name, handle.get_tensor(name)


def update_bytes(
    tensors: Mapping[str, torch.Tensor],
    manifest: UpdateManifest,
    sparse: Mapping[str, SparseTensor] | None = None,
) -> bytes:
    """An update as uploaded: dense tensors, sparse ones as (indices, values), the manifest.

    ``manifest.sparse`` must name exactly the keys of ``sparse``.
    """
    sparse = sparse or {}
    if set(manifest.sparse) != set(sparse):
        raise ValueError("manifest.sparse must name exactly the sparse tensors given")
    flat: dict[str, torch.Tensor] = dict(tensors)
    for name, part in sparse.items():
        numel = math.prod(part.shape)
        encoded = sparse_codec.encode(part.indices.numpy(), numel)
        flat[name + SPARSE_POSITIONS] = torch.frombuffer(bytearray(encoded), dtype=torch.uint8)
        flat[name + SPARSE_VALUES] = part.values.to(torch.float32)
    return to_bytes(flat, {MANIFEST_KEY: manifest.model_dump_json()})


def iter_update(
    path: Path, manifest: UpdateManifest, spec: ModelSpec
) -> Iterator[tuple[str, torch.Tensor | SparseTensor]]:
    """Yield each released tensor of an update file: dense, or sparse (positions decoded)."""
    with _open(path) as handle:
        for name in spec:
            delta = _released(handle, name, manifest, spec)
            if delta is not None:
                yield name, delta


def read_update_tensor(
    path: Path, manifest: UpdateManifest, spec: ModelSpec, name: str
) -> torch.Tensor | SparseTensor | None:
    """One released tensor of an update file (None if withheld), the file closed again.

    For readers that need one tensor of many updates at once: an open file keeps the pages
    it has read mapped, so K files held open while each is read through would keep K whole
    updates resident.
    """
    with _open(path) as handle:
        return _released(handle, name, manifest, spec)


def _released(
    handle: Any, name: str, manifest: UpdateManifest, spec: ModelSpec
) -> torch.Tensor | SparseTensor | None:
    if name in manifest.sparse:
        values = handle.get_tensor(name + SPARSE_VALUES)
        positions = handle.get_tensor(name + SPARSE_POSITIONS)
        indices = _positions(positions, values, spec[name], name)
        return SparseTensor(indices, values, spec[name].shape)
    if name in manifest.excluded:
        return None
    result: torch.Tensor = handle.get_tensor(name)
    return result


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _open(path: Path) -> safe_open:
    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except SafetensorError as exc:
        raise MalformedUpdateError(f"body is not a readable safetensors file: {exc}") from exc


def read_manifest(path: Path) -> UpdateManifest:
    """Parse and validate the manifest of an uploaded update file."""
    with _open(path) as handle:
        metadata = handle.metadata() or {}
    raw = metadata.get(MANIFEST_KEY)
    if raw is None:
        raise MalformedUpdateError(f"update has no {MANIFEST_KEY!r} entry in its metadata")
    try:
        return UpdateManifest.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as exc:
        raise MalformedUpdateError(f"update manifest is invalid: {exc}") from exc


def _expected_keys(
    spec: ModelSpec, sparse: Collection[str], excluded: Collection[str]
) -> dict[str, TensorSpec | None]:
    """Key -> required spec (None for a sparse part, checked separately) of a valid update."""
    unknown = sorted((set(sparse) | set(excluded)) - set(spec))
    if unknown:
        raise SpecMismatchError(
            f"manifest names tensors the global model does not have: {_few(unknown)}"
        )
    both = sorted(set(sparse) & set(excluded))
    if both:
        raise MalformedUpdateError(f"tensors both sparse and excluded: {_few(both)}")
    keys: dict[str, TensorSpec | None] = {}
    for name, want in spec.items():
        if name in sparse:
            keys[name + SPARSE_POSITIONS] = None
            keys[name + SPARSE_VALUES] = None
        elif name not in excluded:
            keys[name] = want
    return keys


def check_against_spec(
    path: Path, spec: ModelSpec, sparse: Collection[str] = (), excluded: Collection[str] = ()
) -> float:
    """Raise unless the file holds exactly what ``spec`` and the manifest's lists call for;
    returns the largest |value| of its float tensors (for the aggregator's range check).

    Dense tensors must match the model's dtype and shape; a sparse tensor's positions must
    decode (shared.sparse_codec) to exactly as many entries inside the tensor as it has
    float32 values; nothing may be NaN or infinite. Tensors are read one at a time
    (memory-mapped).
    """
    expected = _expected_keys(spec, sparse, excluded)
    got = spec_of_file(path)
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    if missing or unexpected:
        raise SpecMismatchError(
            "update key set differs from the global model: "
            f"missing {_few(missing)}, unexpected {_few(unexpected)}"
        )
    for key, want in expected.items():
        have = got[key]
        if want is None:
            continue
        if have.dtype != want.dtype:
            raise SpecMismatchError(
                f"tensor {key!r} has dtype {have.dtype}, the global model's is {want.dtype}"
            )
        if have.shape != want.shape:
            raise SpecMismatchError(
                f"tensor {key!r} has shape {list(have.shape)}, "
                f"the global model's is {list(want.shape)}"
            )
    for name in sparse:
        _check_sparse(name, got, spec[name])
    largest = 0.0
    for name, tensor in iter_tensors(path):
        if name.endswith(SPARSE_POSITIONS):
            base = name[: -len(SPARSE_POSITIONS)]
            values = got[base + SPARSE_VALUES]
            sparse_codec.decode(_raw(tensor), values.shape[0], math.prod(spec[base].shape), base)
        elif tensor.is_floating_point():
            peak = largest_abs(tensor)
            if not math.isfinite(peak):
                bad = int((~torch.isfinite(tensor)).sum())
                raise NonFiniteError(f"tensor {name!r} holds {bad} non-finite values (NaN or inf)")
            largest = max(largest, peak)
    return largest


def _check_sparse(name: str, got: Mapping[str, TensorSpec], want: TensorSpec) -> None:
    positions, values = got[name + SPARSE_POSITIONS], got[name + SPARSE_VALUES]
    if positions.dtype != "U8" or len(positions.shape) != 1:
        raise SpecMismatchError(f"sparse tensor {name!r}: positions must be uint8 [bytes]")
    if values.dtype != "F32" or len(values.shape) != 1:
        raise SpecMismatchError(f"sparse tensor {name!r}: values must be float32 [k]")
    numel = math.prod(want.shape)
    if values.shape[0] > numel:
        raise SpecMismatchError(
            f"sparse tensor {name!r} has more entries than the tensor's {numel}"
        )


def _raw(tensor: torch.Tensor) -> bytes:
    return tensor.numpy().tobytes()


def _positions(
    encoded: torch.Tensor, values: torch.Tensor, want: TensorSpec, name: str
) -> torch.Tensor:
    numel = math.prod(want.shape)
    return torch.from_numpy(sparse_codec.decode(_raw(encoded), values.numel(), numel, name))


def largest_abs(tensor: torch.Tensor) -> float:
    """max |value| (0 for an empty tensor); NaN or infinity if the tensor holds one."""
    if tensor.numel() == 0:
        return 0.0
    if tensor.dtype in (torch.float32, torch.float64, torch.float16):
        return float(np.max(np.abs(tensor.numpy())))
    return float(tensor.abs().max())


def _few(names: list[str], limit: int = 5) -> str:
    if not names:
        return "none"
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"
