"""Each open round's exact running sum, folded one update at a time as they are accepted.

For a linear strategy (FedAvg, FedAdam) the only use of a round's updates is their
weighted mean delta, so each accepted update is added to the round's ``ExactSum`` in a
worker thread right after its 201, and closing the round costs one step of the strategy,
not a read of every update. The sums live in memory only: one lost to a crash (or never
built, as for updates another process accepted) is made whole at the close from the
stored update files (``take``). Because the sum is exact in any order (exact_sum.py),
the model is the same bits however the sum was built.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator, Mapping

import torch
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.aggregator.aggregation.exact_sum import ExactSum
from services.aggregator.aggregation.registry import strategy_for
from services.aggregator.aggregation.strategy import LinearStrategy, Strategy, WeightedUpdate
from services.aggregator.core.blobs import BlobStore
from services.aggregator.state.models import Round, Run, Update
from shared.privacy.types import SparseTensor
from shared.schemas import Aggregation, RoundKind, RoundState, UpdateStatus
from shared.tensors import ModelSpec, iter_update, read_manifest, spec_of_file

FoldSeam = Callable[[str], None]
"""Called with each tensor's name while an update is folded in (a test seam)."""


def _nothing(_name: str) -> None:
    return None


def key_of(node: str, sha256: str) -> str:
    """A contribution's key in a round's sum: one per node and update."""
    return f"{node}:{sha256}"


_FLOATS = frozenset({"F16", "BF16", "F32", "F64"})


def sum_for(spec: ModelSpec) -> ExactSum:
    """An empty sum over the float tensors of a model with this spec."""
    return ExactSum({name: torch.Size(t.shape) for name, t in spec.items() if t.dtype in _FLOATS})


def _strategy(session: Session, rnd: Round) -> Strategy:
    run = session.get(Run, rnd.run_id)
    assert run is not None
    return strategy_for(Aggregation.model_validate(run.aggregation_json or {}))


def sums_exactly(session: Session, rnd: Round) -> bool:
    """Whether ``rnd``'s run adds its updates in an ExactSum (whose range is limited)."""
    return _strategy(session, rnd).sums_exactly


def folds(session: Session, rnd: Round) -> bool:
    """Whether ``rnd``'s updates are summed as they arrive: a train round of a linear run."""
    if rnd.kind != RoundKind.TRAIN:
        return False
    return isinstance(_strategy(session, rnd), LinearStrategy)


class RoundSums:
    """The running sums of open rounds, by round id; every method is thread-safe."""

    def __init__(self) -> None:
        self._sums: dict[int, ExactSum] = {}
        self._lock = threading.Lock()
        self.seam: FoldSeam = _nothing

    def __len__(self) -> int:
        return len(self._sums)

    def fold(self, session: Session, blobs: BlobStore, round_id: int, node: str) -> None:
        """Add ``node``'s accepted update to its round's sum, if the round is still open.

        A round that has begun aggregating is left alone: its close folds what it lacks.
        """
        with self._lock:
            rnd = session.get(Round, round_id)
            if rnd is None or rnd.state != RoundState.OPEN or not folds(session, rnd):
                return
            row = session.scalars(
                select(Update).where(
                    Update.round_id == round_id,
                    Update.node == node,
                    Update.status == UpdateStatus.ACCEPTED,
                )
            ).first()
            if row is None or not row.has_blob:
                return
            spec = spec_of_file(blobs.open_path(rnd.base_model))
            total = self._sums.pop(round_id, None) or sum_for(spec)
            key = key_of(row.node, row.sha256)
            if key not in total.weights:
                total.add(key, float(row.num_samples), self._watched(blobs, row.sha256, spec))
            self._sums[round_id] = total  # only a whole fold is kept: a failed one drops it

    def _watched(
        self, blobs: BlobStore, sha256: str, spec: ModelSpec
    ) -> Iterator[tuple[str, torch.Tensor | SparseTensor]]:
        path = blobs.open_path(sha256)
        for name, delta in iter_update(path, read_manifest(path), spec):
            self.seam(name)
            yield name, delta

    def take(
        self, round_id: int, spec: ModelSpec, contributions: Mapping[str, WeightedUpdate]
    ) -> ExactSum:
        """The sum of exactly ``contributions`` (by ``key_of``), from what was folded, made
        whole from the stored files; the round's sum leaves the store."""
        with self._lock:
            total = self._sums.pop(round_id, None)
        if total is None or set(total.weights) - set(contributions):
            total = sum_for(spec)  # none kept, or it holds one no longer counted
        for key, update in sorted(contributions.items()):
            if key not in total.weights:
                total.add(key, update.weight, update.tensors())
        return total

    def keep_only(self, open_rounds: Collection[int]) -> None:
        """Forget the sums of rounds that are no longer open (failed, aborted, closed)."""
        with self._lock:
            for round_id in [r for r in self._sums if r not in open_rounds]:
                del self._sums[round_id]
