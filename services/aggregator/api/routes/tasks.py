"""Long-poll for a node's next task (nodes only ever call out; DESIGN 3.2)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from services.aggregator.api.deps import ChangesDep, CurrentNode, FederationDep, SettingsDep
from services.aggregator.api.limits import InFlight
from shared.schemas import TaskPoll

router = APIRouter(tags=["tasks"])
_RECHECK_S = 1.0
"""Deadline re-opens change state without a signal, so a waiting poll re-reads this often."""
MAX_POLLS = 4
"""Concurrent long-polls per node: one is all a node needs, a few cover a restart."""
POLLS = InFlight(MAX_POLLS, "task polls")


@router.get("/tasks/next")
async def next_task(
    node: CurrentNode,
    federation: FederationDep,
    settings: SettingsDep,
    changes: ChangesDep,
    wait: float = Query(default=0.0, ge=0.0, description="seconds to wait for a task"),
) -> TaskPoll:
    """The node's task, waiting up to ``wait`` s (capped at FEDSEG_LONG_POLL_S) for one;
    429 when the node already has MAX_POLLS polls open."""
    with POLLS.slot(node.name):
        loop = asyncio.get_running_loop()
        until = loop.time() + min(wait, settings.long_poll_s)
        while True:
            poll = await run_in_threadpool(federation.poll, node)
            remaining = until - loop.time()
            if poll.task is not None or remaining <= 0:
                return poll
            await changes.wait(min(remaining, _RECHECK_S))
