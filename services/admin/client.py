"""The admin's HTTP client: mutual TLS with the admin kit, typed answers, clear errors."""

from __future__ import annotations

from typing import Any, TypeVar

import httpx
from pydantic import TypeAdapter

from services.admin.config import AdminSettings
from shared.errors import FedsegError
from shared.schemas import API_PREFIX, Health, NodeView, RoundView, RunCreate, RunView
from shared.tls import CLOSED_WITHOUT_ANSWER, client_ssl_context, describe_tls_failure

T = TypeVar("T")


class AdminError(FedsegError):
    """The aggregator could not be reached (``status`` None), or refused or failed a request."""

    code = "admin_error"

    def __init__(self, message: str, answered: int | None = None, fatal: bool = False) -> None:
        super().__init__(message)
        self.answered = answered
        """The HTTP status the aggregator answered with; None when it did not answer."""
        self.fatal = fatal

    @property
    def transient(self) -> bool:
        """Worth retrying: no answer at all (but not a TLS refusal), or a 5xx."""
        if self.fatal:
            return False
        return self.answered is None or self.answered >= 500


class AdminClient:
    """One method per admin action; every answer is validated against the wire schemas."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    @classmethod
    def connect(cls, settings: AdminSettings) -> AdminClient:
        context = client_ssl_context(settings.cert, settings.key, settings.ca)
        http = httpx.Client(base_url=settings.url, verify=context, timeout=settings.timeout_s)
        return cls(http)

    def close(self) -> None:
        self.http.close()

    def health(self) -> Health:
        return self._get("/health", Health)

    def runs(self) -> list[RunView]:
        return self._get("/runs", list[RunView])

    def run(self, run_id: int) -> RunView:
        return self._get(f"/runs/{run_id}", RunView)

    def rounds(self, run_id: int | None = None) -> list[RoundView]:
        path = "/rounds" if run_id is None else f"/runs/{run_id}/rounds"
        return self._get(path, list[RoundView])

    def nodes(self) -> list[NodeView]:
        return self._get("/nodes", list[NodeView])

    def create_run(self, request: RunCreate) -> RunView:
        body = request.model_dump(mode="json")
        return TypeAdapter(RunView).validate_python(self._send("POST", "/runs", body).json())

    def steer(self, run_id: int, action: str) -> RunView:
        """``action`` is pause, resume or abort."""
        answer = self._send("POST", f"/runs/{run_id}/{action}", None)
        return RunView.model_validate(answer.json())

    def model(self, sha256: str) -> bytes:
        return self._send("GET", f"/models/{sha256}", None).content

    def remove_node(self, run_id: int, name: str) -> RunView:
        answer = self._send("DELETE", f"/runs/{run_id}/nodes/{name}", None)
        return RunView.model_validate(answer.json())

    def revoke(self, serial: int, name: str, reason: str | None) -> None:
        body = {"serial": format(serial, "x"), "name": name, "reason": reason}
        self._send("POST", "/revocations", body)

    def _get(self, path: str, kind: type[T] | Any) -> T:
        answer = self._send("GET", path, None)
        result: T = TypeAdapter(kind).validate_python(answer.json())
        return result

    def _send(self, method: str, path: str, body: object) -> httpx.Response:
        url = f"{API_PREFIX}{path}"
        try:
            response = self.http.request(method, url, json=body)
        except httpx.TransportError as exc:
            tls = describe_tls_failure(exc)
            if tls is not None:
                raise AdminError(
                    f"TLS with {self.http.base_url} failed: {tls}", fatal=True
                ) from None
            if isinstance(exc, httpx.RemoteProtocolError):
                message = f"{self.http.base_url}: {CLOSED_WITHOUT_ANSWER}"
                raise AdminError(message, fatal=True) from None
            raise AdminError(f"cannot reach the aggregator at {self.http.base_url}: {exc}") from exc
        if not response.is_success:
            status = response.status_code
            raise AdminError(f"{method} {url} answered {status}: {_detail(response)}", status)
        return response


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(detail, list):  # FastAPI's validation errors
        return "; ".join(
            f"{'.'.join(str(p) for p in item.get('loc', []))}: {item.get('msg')}" for item in detail
        )
    return str(detail)
