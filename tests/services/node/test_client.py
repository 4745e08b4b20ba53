"""The node's client: retries with backoff, typed errors carrying the aggregator's detail."""

from __future__ import annotations

import httpx
import pytest

from services.node.client import AggregatorClient
from shared import errors
from shared.schemas import PROTOCOL_HEADER, PROTOCOL_VERSION, TaskPoll


def _client(handler: httpx.MockTransport, sleeps: list[float], **kw: object) -> AggregatorClient:
    http = httpx.Client(transport=handler, base_url="https://aggregator")
    return AggregatorClient(http, max_backoff_s=4.0, sleep=sleeps.append, **kw)  # type: ignore[arg-type]


def test_poll_retries_unreachable_then_succeeds() -> None:
    answers: list[object] = [
        httpx.ConnectError("refused"),
        httpx.Response(503),
        httpx.Response(200, json={"task": None, "run_id": None, "run_state": None}),
    ]

    def handle(request: httpx.Request) -> httpx.Response:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, httpx.Response)
        return answer

    sleeps: list[float] = []
    poll = _client(httpx.MockTransport(handle), sleeps).poll(0)
    assert poll == TaskPoll(task=None, run_id=None, run_state=None)
    assert len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5
    assert 0.5 <= sleeps[1] <= 1.0


def test_backoff_is_capped() -> None:
    sleeps: list[float] = []
    client = _client(httpx.MockTransport(lambda r: httpx.Response(502)), sleeps, max_attempts=12)
    with pytest.raises(errors.TransportError, match="failed after 12 attempts: HTTP 502"):
        client.poll(0)
    assert max(sleeps) <= 4.0
    assert len(sleeps) == 11


@pytest.mark.parametrize(
    ("status", "detail", "kind"),
    [
        (
            409,
            "update was computed from model abc…, but round 2's base model is def…",
            errors.StaleModelError,
        ),
        (409, "round 2 of run 1 is closed", errors.RoundNotOpenError),
        (403, "no task was issued to node site-1 for run 1 round 2", errors.PermissionDeniedError),
        (422, "tensor 'a' holds 1 non-finite values (NaN or inf)", errors.UpdateRejectedError),
        (413, "update body exceeds the limit", errors.PayloadTooLargeError),
    ],
)
def test_client_errors_are_not_retried_and_carry_detail(
    status: int, detail: str, kind: type[errors.FedsegError]
) -> None:
    calls: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(status, json={"detail": detail})

    sleeps: list[float] = []
    with pytest.raises(kind) as caught:
        _client(httpx.MockTransport(handle), sleeps).upload_update(1, 2, b"x")
    assert str(caught.value) == f"aggregator answered {status}: {detail}"
    assert len(calls) == 1
    assert sleeps == []


def test_download_verifies_hash_and_caches(tmp_path: object) -> None:
    import hashlib
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    payload = b"model bytes"
    sha = hashlib.sha256(payload).hexdigest()
    calls: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(200, content=payload if sha in request.url.path else b"other")

    client = _client(httpx.MockTransport(handle), [])
    path = client.download_model(sha, tmp_path)
    assert path.read_bytes() == payload
    assert client.download_model(sha, tmp_path) == path
    assert calls == [f"/api/v1/models/{sha}"]
    with pytest.raises(errors.TransportError, match="does not hash to"):
        client.download_model("0" * 64, tmp_path)


def test_every_request_names_the_protocol_and_a_mismatch_is_fatal() -> None:
    seen: list[str | None] = []
    detail = (
        "node site-1 speaks wire protocol 1, this aggregator 2: run the same fedseg release "
        "on the aggregator and every node"
    )

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get(PROTOCOL_HEADER))
        return httpx.Response(409, json={"detail": detail})

    sleeps: list[float] = []
    with pytest.raises(errors.ProtocolMismatchError, match="speaks wire protocol 1"):
        _client(httpx.MockTransport(handle), sleeps).poll(0)
    assert seen == [str(PROTOCOL_VERSION)]  # sent, and not retried
    assert sleeps == []
