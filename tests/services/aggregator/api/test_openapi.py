"""The served OpenAPI lists every status each operation answers, with its error codes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.testclient import TestClient

ClientAs = Callable[..., TestClient]


def _responses(schema: dict[str, Any], method: str, path: str) -> dict[str, str]:
    answers = schema["paths"][f"/api/v1{path}"][method]["responses"]
    return {status: answer["description"] for status, answer in answers.items()}


def test_every_operation_documents_the_errors_it_can_answer(client_as: ClientAs) -> None:
    schema = client_as("admin").get("/openapi.json").json()
    upload = _responses(schema, "put", "/runs/{run_id}/rounds/{number}/update")
    assert sorted(upload) == ["201", "400", "401", "403", "404", "409", "413", "422", "503",
                              "507"]  # fmt: skip
    assert "payload_too_large" in upload["413"]
    assert "storage_full" in upload["507"]
    assert "protocol_mismatch" in upload["409"]
    assert "round_not_open" in upload["409"]
    assert "certificate_revoked" in upload["403"]
    poll = _responses(schema, "get", "/tasks/next")
    assert "429" in poll
    assert "too_many_requests" in poll["429"]
    status = _responses(schema, "get", "/rounds")
    assert sorted(status) == ["200", "401", "403", "404", "422", "503"]
    assert "304" in _responses(schema, "get", "/models/{sha256}")
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["detail", "code"]
