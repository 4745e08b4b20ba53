"""A scripted aggregator for attacking a real node: real HTTP, real mutual TLS, fixed tasks.

It plays the adversary of the privacy design (DESIGN 3.6): it hands out whatever tasks the
test scripts (the same run and round again and again, with fresh nonces; run ids another
federation also used) and records every request body the node sends, byte for byte.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from services.demo.processes import Kit, free_port
from shared.model import ModelConfig, initial_state
from shared.schemas import (
    API_PREFIX,
    MANIFEST_KEY,
    PrivacyPolicy,
    RoundKind,
    Task,
    TaskPoll,
    TrainingPlan,
)
from shared.tensors import to_bytes


@dataclass(frozen=True)
class Sent:
    """One request the node made: method, path and its exact body."""

    method: str
    path: str
    body: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()

    def json(self) -> dict[str, object]:
        value = json.loads(self.body)
        assert isinstance(value, dict)
        return value

    def manifest(self) -> dict[str, object]:
        """The UpdateManifest inside an uploaded safetensors body."""
        size = int.from_bytes(self.body[:8], "little")
        header = json.loads(self.body[8 : 8 + size])
        value = json.loads(header["__metadata__"][MANIFEST_KEY])
        assert isinstance(value, dict)
        return value


@dataclass
class Script:
    """The tasks to hand out, in order; then the run is reported completed."""

    model: ModelConfig
    plan: TrainingPlan
    privacy: PrivacyPolicy
    rounds: int
    tasks: list[tuple[int, int, RoundKind]]
    """(run id, round, kind) of each task; each gets a fresh nonce."""
    sent: list[Sent] = field(default_factory=list)
    issued: list[Task] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.model_bytes = to_bytes(initial_state(self.model, seed=0))
        self.model_sha = hashlib.sha256(self.model_bytes).hexdigest()
        self._pending = list(self.tasks)
        self._lock = threading.Lock()

    def next_task(self) -> Task | None:
        with self._lock:
            if not self._pending:
                return None
            run_id, number, kind = self._pending.pop(0)
            task = Task(
                run_id=run_id,
                round=number,
                kind=kind,
                rounds=self.rounds,
                task_nonce=secrets.token_urlsafe(18),
                base_model=self.model_sha,
                model=self.model,
                plan=self.plan,
                privacy=self.privacy,
                deadline=datetime.now(UTC) + timedelta(hours=1),
            )
            self.issued.append(task)
            return task

    def bodies(self, suffix: str) -> list[Sent]:
        return [s for s in self.sent if s.path.endswith(suffix)]


def _receipt(script: Script, sha256: str) -> dict[str, object]:
    task = script.issued[-1]
    return {
        "run_id": task.run_id,
        "round": task.round,
        "node": "site-1",
        "sha256": sha256,
        "num_samples": 1,
        "accepted_at": datetime.now(UTC).isoformat(),
    }


def build_app(script: Script) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def record(request: Request, call_next):  # type: ignore[no-untyped-def]
        body = await request.body()
        script.sent.append(Sent(request.method, request.url.path, body))
        return await call_next(request)

    @app.post(f"{API_PREFIX}/nodes/announce")
    def announce() -> dict[str, object]:
        return {"name": "site-1", "role": "node", "software_version": None, "device": None,
                "num_train_cases": None, "last_seen": None, "rounds_joined": 0,
                "privacy_total": None}  # fmt: skip

    @app.get(f"{API_PREFIX}/tasks/next")
    def poll() -> Response:
        task = script.next_task()
        state = "running" if task is not None else "completed"
        answer = TaskPoll(task=task, run_id=1, run_state=state)  # type: ignore[arg-type]
        return Response(answer.model_dump_json(), media_type="application/json")

    @app.get(API_PREFIX + "/models/{sha256}")
    def model(sha256: str) -> Response:
        return Response(script.model_bytes, media_type="application/octet-stream")

    @app.put(API_PREFIX + "/runs/{run_id}/rounds/{number}/update")
    async def upload(request: Request) -> Response:
        sent = Sent("PUT", request.url.path, await request.body())
        if sent.manifest()["task_nonce"] != script.issued[-1].task_nonce:
            return JSONResponse({"detail": "task nonce does not match the task issued"}, 403)
        return JSONResponse(_receipt(script, sent.sha256), 201)

    @app.post(API_PREFIX + "/runs/{run_id}/rounds/{number}/{what}")
    async def report(request: Request) -> Response:
        sent = Sent("POST", request.url.path, await request.body())
        if sent.json()["task_nonce"] != script.issued[-1].task_nonce:
            return JSONResponse({"detail": "task nonce does not match the task issued"}, 403)
        return JSONResponse(_receipt(script, sent.sha256), 201)

    return app


@contextlib.contextmanager
def serving(script: Script, pki_dir: Path) -> Iterator[str]:
    """Serve ``script`` over mutual TLS with the federation's aggregator certificate."""
    kit = Kit.of(pki_dir, "aggregator")
    port = free_port()
    config = uvicorn.Config(
        build_app(script),
        host="127.0.0.1",
        port=port,
        ssl_certfile=str(kit.cert),
        ssl_keyfile=str(kit.key),
        ssl_ca_certs=str(kit.ca),
        ssl_cert_reqs=ssl.CERT_REQUIRED,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
