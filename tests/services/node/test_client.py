"""The node's client: retries with backoff, typed errors carrying the aggregator's detail."""

from __future__ import annotations

import httpx
import pytest

from services.node.client import AggregatorClient, raise_for_answer
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
        (403, "certificate 1f of site-1 has been revoked", errors.CertificateRevokedError),
        (422, "tensor 'a' holds 1 non-finite values (NaN or inf)", errors.NonFiniteError),
        (413, "update body exceeds the limit", errors.PayloadTooLargeError),
    ],
)
def test_client_errors_are_not_retried_and_carry_detail(
    status: int, detail: str, kind: type[errors.FedsegError]
) -> None:
    calls: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(status, json={"detail": detail, "code": kind.code})

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
        return httpx.Response(409, json={"detail": detail, "code": "protocol_mismatch"})

    sleeps: list[float] = []
    with pytest.raises(errors.ProtocolMismatchError, match="speaks wire protocol 1"):
        _client(httpx.MockTransport(handle), sleeps).poll(0)
    assert seen == [str(PROTOCOL_VERSION)]  # sent, and not retried
    assert sleeps == []


ANSWERED = [kind for kind in errors.error_classes() if kind.status < 500]
"""Error classes a node raises from an answer (5xx are retried instead)."""
WORDINGS = ("round 2 of run 1 is closed", "speaks wire protocol 9", "a different update", "")


@pytest.mark.parametrize("kind", ANSWERED, ids=lambda kind: kind.__name__)
def test_the_class_comes_from_the_code_whatever_the_wording(kind: type[errors.FedsegError]) -> None:
    """Rewording a message cannot change what the node does: only ``code`` chooses the class."""
    for words in WORDINGS:
        answer = httpx.Response(kind.status, json={"detail": words, "code": kind.code})
        with pytest.raises(errors.FedsegError) as caught:
            raise_for_answer(answer)
        assert type(caught.value) is kind


def test_an_answer_without_a_known_code_falls_back_to_its_status_family() -> None:
    for body, kind in (
        ({"detail": "round 2 of run 1 is closed"}, errors.ConflictError),
        ({"detail": "x", "code": "from_a_future_release"}, errors.ConflictError),
        ("<html>proxy says no</html>", errors.ConflictError),
    ):
        answer = (
            httpx.Response(409, json=body) if isinstance(body, dict)
            else httpx.Response(409, text=body)
        )  # fmt: skip
        with pytest.raises(errors.FedsegError) as caught:
            raise_for_answer(answer)
        assert type(caught.value) is kind
