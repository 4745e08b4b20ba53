"""A node that does no training: download the global model, upload a zero delta, repeat.

Used by the round-overhead benchmark so that what is timed is coordination alone.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import torch

from services.demo.processes import Kit
from services.node.client import AggregatorClient
from shared.schemas import (
    PROTOCOL_VERSION,
    Announcement,
    EvaluationReport,
    RunState,
    UpdateManifest,
    UpdateMetrics,
)
from shared.tensors import load_file, update_bytes


def main(pki_dir: str, name: str, url: str) -> int:
    torch.set_num_threads(1)
    # Below the aggregator's priority: in a federation each node has its own machine, and
    # here 16 of them would otherwise time-share this machine's cores with the aggregator
    # (its event loop then waits for a core, not for its own work).
    os.nice(10)
    cache = Path(tempfile.mkdtemp(prefix=f"idle-{name}-"))
    with Kit.of(Path(pki_dir), name).http(url, timeout=120) as http:
        client = AggregatorClient(http)
        client.announce(
            Announcement(
                protocol=PROTOCOL_VERSION,
                software_version="idle",
                device="cpu",
                num_train_cases=0,
                num_val_cases=0,
            )
        )
        zeros: dict[str, torch.Tensor] | None = None
        while True:
            poll = client.poll(20)
            if poll.task is None:
                if poll.run_state in (RunState.COMPLETED, RunState.FAILED, RunState.ABORTED):
                    return 0
                continue
            task = poll.task
            path = client.download_model(task.base_model, cache)
            if zeros is None:
                zeros = {k: torch.zeros_like(v) for k, v in load_file(path).items()}
            path.unlink()  # every round downloads for real, as a node would
            if task.kind == "evaluate":
                client.report_evaluation(
                    EvaluationReport(
                        run_id=task.run_id, round=task.round, task_nonce=task.task_nonce,
                        base_model=task.base_model, num_samples=0, metrics=UpdateMetrics(),
                    )
                )  # fmt: skip
                continue
            manifest = UpdateManifest(
                run_id=task.run_id, round=task.round, task_nonce=task.task_nonce,
                base_model=task.base_model, num_samples=1,
            )  # fmt: skip
            client.upload_update(task.run_id, task.round, update_bytes(zeros, manifest))


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:4]))
