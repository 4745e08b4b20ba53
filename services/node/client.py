"""The node's HTTP client for the aggregator: mTLS, retries with backoff, typed answers."""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx
from pydantic import BaseModel

from shared import errors
from shared.schemas import (
    API_PREFIX,
    PROTOCOL_HEADER,
    PROTOCOL_VERSION,
    Announcement,
    Decline,
    EvaluationReport,
    NodeFailure,
    NodeView,
    TaskPoll,
    UpdateReceipt,
)
from shared.tls import CLOSED_WITHOUT_ANSWER, describe_tls_failure

log = logging.getLogger("fedseg.node")
T = TypeVar("T", bound=BaseModel)

_BY_STATUS: dict[int, type[errors.FedsegError]] = {
    400: errors.InvalidRequestError,
    401: errors.AuthenticationRequiredError,
    403: errors.PermissionDeniedError,
    404: errors.NotFoundError,
    409: errors.ConflictError,
    413: errors.PayloadTooLargeError,
    422: errors.UpdateRejectedError,
}
"""For answers without a known code (a proxy's page, an older aggregator): the family."""
_RETRY_STATUS = {429, 500, 502, 503, 504, 507}


def raise_for_answer(response: httpx.Response) -> None:
    """Turn an error answer into the FedsegError its wire ``code`` names, with its detail.

    The class comes from the code (shared/errors.py), never from the message's wording; an
    answer without a known code maps to the family of its status.
    """
    if response.is_success or response.status_code == 304:
        return
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        detail, code = str(body.get("detail")), body.get("code")
    else:
        detail, code = response.text[:500], None
    kind = errors.for_code(code) or _BY_STATUS.get(response.status_code, errors.TransportError)
    raise kind(f"aggregator answered {response.status_code}: {detail}")


class AggregatorClient:
    """Every call retries on network failure or 5xx, backing off up to ``max_backoff_s``.

    Only the node opens connections (DESIGN 3.2); ``http`` is injectable so tests can drive
    the real FastAPI app through ``httpx.ASGITransport``.
    """

    def __init__(
        self,
        http: httpx.Client,
        max_backoff_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int | None = None,
    ) -> None:
        self.http = http
        self.http.headers[PROTOCOL_HEADER] = str(PROTOCOL_VERSION)
        self.max_backoff_s = max_backoff_s
        self.sleep = sleep
        self.max_attempts = max_attempts
        self._jitter = random.Random()  # backoff jitter only; not privacy-relevant  # noqa: S311

    def _send(self, request: Callable[[], httpx.Response], what: str) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = request()
                if response.status_code not in _RETRY_STATUS:
                    raise_for_answer(response)
                    return response
                problem = f"HTTP {response.status_code}"
            except httpx.TransportError as exc:
                tls = describe_tls_failure(exc)
                if tls is not None:  # a wrong CA or a plain-HTTP server stays wrong
                    raise errors.TlsError(
                        f"{what}: {self.http.base_url} refused TLS: {tls}"
                    ) from None
                problem = f"{type(exc).__name__}: {exc}"
                if isinstance(exc, httpx.RemoteProtocolError):
                    problem = CLOSED_WITHOUT_ANSWER
            if self.max_attempts is not None and attempt >= self.max_attempts:
                raise errors.TransportError(f"{what} failed after {attempt} attempts: {problem}")
            delay = min(self.max_backoff_s, 0.5 * 2 ** min(attempt - 1, 16))
            delay *= 0.5 + self._jitter.random() / 2
            log.warning("%s failed (%s); retrying in %.1f s", what, problem, delay)
            self.sleep(delay)

    def _json(self, model: type[T], response: httpx.Response) -> T:
        return model.model_validate_json(response.content)

    def _post_json(self, path: str, body: BaseModel, what: str, answer: type[T]) -> T:
        """POST `body` as JSON to ``API_PREFIX + path`` (with retries); parse the answer."""
        response = self._send(
            lambda: self.http.post(
                f"{API_PREFIX}{path}",
                content=body.model_dump_json(),
                headers={"content-type": "application/json"},
            ),
            what,
        )
        return self._json(answer, response)

    def _tell(self, path: str, body: BaseModel | None) -> bool:
        """One best-effort POST with no retries (the node is failing or busy): was it heard?"""
        try:
            response = self.http.post(
                f"{API_PREFIX}{path}",
                content=b"" if body is None else body.model_dump_json(),
                headers={"content-type": "application/json"},
                timeout=10.0,
            )
            raise_for_answer(response)
        except (httpx.HTTPError, errors.FedsegError) as exc:
            log.debug("telling the aggregator %s failed: %s", path, exc)
            return False
        return True

    def report_failure(self, failure: NodeFailure) -> bool:
        """Tell the aggregator this node failed (category and type only, never the text)."""
        return self._tell("/nodes/failure", failure)

    def heartbeat(self) -> bool:
        return self._tell("/nodes/heartbeat", None)

    def announce(self, body: Announcement) -> NodeView:
        return self._post_json("/nodes/announce", body, "announce", NodeView)

    def poll(self, wait_s: float) -> TaskPoll:
        response = self._send(
            lambda: self.http.get(
                f"{API_PREFIX}/tasks/next",
                params={"wait": wait_s},
                timeout=httpx.Timeout(wait_s + 30.0),
            ),
            "polling for a task",
        )
        return self._json(TaskPoll, response)

    def download_model(self, sha256: str, cache_dir: Path) -> Path:
        """The model's safetensors file, from the local cache or the aggregator (verified)."""
        target = cache_dir / f"{sha256}.safetensors"
        if target.is_file():
            return target
        cache_dir.mkdir(parents=True, exist_ok=True)
        response = self._send(
            lambda: self.http.get(f"{API_PREFIX}/models/{sha256}"),
            f"downloading model {sha256[:12]}",
        )
        if hashlib.sha256(response.content).hexdigest() != sha256:
            raise errors.TransportError(f"downloaded model does not hash to {sha256}")
        temporary = target.with_suffix(".partial")
        temporary.write_bytes(response.content)
        temporary.replace(target)
        return target

    def upload_update(self, run_id: int, number: int, body: bytes) -> UpdateReceipt:
        response = self._send(
            lambda: self.http.put(
                f"{API_PREFIX}/runs/{run_id}/rounds/{number}/update",
                content=body,
                headers={"content-type": "application/octet-stream"},
            ),
            f"uploading the update for round {number}",
        )
        return self._json(UpdateReceipt, response)

    def decline(self, body: Decline) -> UpdateReceipt:
        path = f"/runs/{body.run_id}/rounds/{body.round}/decline"
        return self._post_json(path, body, f"declining round {body.round}", UpdateReceipt)

    def report_evaluation(self, report: EvaluationReport) -> UpdateReceipt:
        body = report.model_dump_json().encode()
        return self.report_evaluation_bytes(report.run_id, report.round, body)

    def report_evaluation_bytes(self, run_id: int, number: int, body: bytes) -> UpdateReceipt:
        """POST an EvaluationReport's exact JSON bytes (as recorded in the node's ledger)."""
        response = self._send(
            lambda: self.http.post(
                f"{API_PREFIX}/runs/{run_id}/rounds/{number}/evaluation",
                content=body,
                headers={"content-type": "application/json"},
            ),
            f"reporting the evaluation of round {number}",
        )
        return self._json(UpdateReceipt, response)
