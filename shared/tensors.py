"""Weights on the wire and at rest: safetensors only, checked against the model's spec.

Nothing here unpickles: safetensors stores raw little-endian buffers behind a JSON header,
so reading a file from another party can at worst fail, never execute code.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as _save_bytes

from shared.errors import MalformedUpdateError, NonFiniteError, SpecMismatchError
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


def update_bytes(tensors: Mapping[str, torch.Tensor], manifest: UpdateManifest) -> bytes:
    """An update as uploaded: the tensors plus the manifest binding them to their task."""
    return to_bytes(tensors, {MANIFEST_KEY: manifest.model_dump_json()})


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


def check_against_spec(path: Path, spec: ModelSpec) -> None:
    """Raise unless the file holds exactly ``spec``'s tensors, all finite.

    Tensors are read one at a time from the memory-mapped file.
    """
    got = spec_of_file(path)
    missing = sorted(set(spec) - set(got))
    unexpected = sorted(set(got) - set(spec))
    if missing or unexpected:
        raise SpecMismatchError(
            "update key set differs from the global model: "
            f"missing {_few(missing)}, unexpected {_few(unexpected)}"
        )
    for name, want in spec.items():
        have = got[name]
        if have.dtype != want.dtype:
            raise SpecMismatchError(
                f"tensor {name!r} has dtype {have.dtype}, the global model's is {want.dtype}"
            )
        if have.shape != want.shape:
            raise SpecMismatchError(
                f"tensor {name!r} has shape {list(have.shape)}, "
                f"the global model's is {list(want.shape)}"
            )
    for name, tensor in iter_tensors(path):
        if tensor.is_floating_point() and not all_finite(tensor):
            bad = int((~torch.isfinite(tensor)).sum())
            raise NonFiniteError(f"tensor {name!r} holds {bad} non-finite values (NaN or inf)")


def all_finite(tensor: torch.Tensor) -> bool:
    """True if no NaN or infinity; numpy's check is ~40x faster than torch's on one core."""
    if tensor.dtype in (torch.float32, torch.float64, torch.float16):
        return bool(np.isfinite(tensor.numpy()).all())
    return bool(torch.isfinite(tensor).all())


def _few(names: list[str], limit: int = 5) -> str:
    if not names:
        return "none"
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"
