"""Every status code an API operation can answer, documented in its OpenAPI entry.

FastAPI documents the success answer and a 422 for what it validates; everything else a
client may get comes from ``shared.errors`` (raised by the routes, the identity
dependencies and the request limits). This is the one table of which errors each operation
can raise: those every operation shares (identity, validation, storage), those of every
operation with a body (size cap, malformed body), those of node operations (protocol
header), and each operation's own. The schema is built once; ``tests`` run schemathesis
against it with a check that every status a real aggregator answers is documented.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from services.aggregator.api.deps import current_node
from shared import errors
from shared.schemas import API_PREFIX

Error = type[errors.FedsegError]

EVERY: tuple[Error, ...] = (
    errors.AuthenticationRequiredError,
    errors.PermissionDeniedError,
    errors.CertificateRevokedError,
    errors.RequestValidationFailedError,
    errors.StorageError,
)
"""Any operation: no or a refused certificate, a bad parameter, the database unreachable."""
WITH_BODY: tuple[Error, ...] = (
    errors.InvalidRequestError,
    errors.PayloadTooLargeError,
    errors.BrowserWriteRefusedError,
)
NODE: tuple[Error, ...] = (errors.InvalidRequestError, errors.ProtocolMismatchError)
"""Operations of nodes check the wire protocol header they send."""
RUN_SCOPED: tuple[Error, ...] = (errors.NotFoundError,)
"""Operations on a run, round or model that may not exist."""
SUBMISSION: tuple[Error, ...] = (
    errors.NotFoundError,
    errors.RoundNotOpenError,
    errors.StaleModelError,
    errors.DuplicateUpdateError,
    errors.NotExpectedError,
    errors.UpdateRejectedError,
    errors.PolicyRejectedError,
)

OWN: dict[tuple[str, str], tuple[Error, ...]] = {
    ("post", "/runs"): (errors.ConflictError, errors.PolicyRejectedError),
    ("get", "/runs/{run_id}"): RUN_SCOPED,
    ("post", "/runs/{run_id}/pause"): (errors.NotFoundError, errors.ConflictError),
    ("post", "/runs/{run_id}/resume"): (errors.NotFoundError, errors.ConflictError),
    ("post", "/runs/{run_id}/abort"): (errors.NotFoundError, errors.ConflictError),
    ("delete", "/runs/{run_id}/nodes/{name}"): (errors.NotFoundError, errors.ConflictError),
    ("get", "/rounds"): RUN_SCOPED,
    ("get", "/runs/{run_id}/rounds"): RUN_SCOPED,
    ("get", "/runs/{run_id}/rounds/{number}"): RUN_SCOPED,
    ("get", "/models/{sha256}"): RUN_SCOPED,
    ("post", "/nodes/announce"): (errors.ConflictError,),
    ("get", "/tasks/next"): (errors.TooManyRequestsError,),
    ("put", "/runs/{run_id}/rounds/{number}/update"): (
        *SUBMISSION,
        errors.MalformedUpdateError,
        errors.StorageFullError,
    ),
    ("post", "/runs/{run_id}/rounds/{number}/decline"): SUBMISSION,
    ("post", "/runs/{run_id}/rounds/{number}/evaluation"): SUBMISSION,
}
"""What each operation raises beyond the shared sets, by (method, path under the prefix)."""

ERROR_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["detail", "code"],
    "properties": {
        "detail": {"description": "what happened and what to do, for a person"},
        "code": {"type": "string", "description": "what happened, for a program"},
    },
}
EXTRA_ANSWERS: dict[tuple[str, str], dict[str, str]] = {
    ("get", "/models/{sha256}"): {"304": "Not modified: the If-None-Match digest is current"},
}


def _depends_on(dependant: Dependant, call: Callable[..., Any]) -> bool:
    return any(d.call is call or _depends_on(d, call) for d in dependant.dependencies)


def errors_of(route: APIRoute, method: str, has_body: bool) -> list[Error]:
    """Every error class the operation can answer with, in table order, each once."""
    path = route.path
    found: list[Error] = [*EVERY]
    if has_body or method in ("put", "post", "delete"):
        found += WITH_BODY
    if _depends_on(route.dependant, current_node):
        found += NODE
    found += OWN.get((method, path), ())
    return list(dict.fromkeys(found))


def _by_status(found: Iterable[Error]) -> Iterator[tuple[int, list[str]]]:
    statuses: dict[int, list[str]] = {}
    for kind in found:
        codes = statuses.setdefault(kind.status, [])
        codes += [c.code for c in errors.error_classes() if issubclass(c, kind) and
                  c.status == kind.status and c.code not in codes]  # fmt: skip
    yield from sorted(statuses.items())


def document_errors(app: FastAPI, routers: Iterable[APIRouter]) -> None:
    """Replace ``app.openapi`` with one whose operations list every status they answer.

    ``routers`` are those included under API_PREFIX (their routes name the dependencies).
    """
    api_routes = [r for router in routers for r in router.routes if isinstance(r, APIRoute)]

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_BODY
        for route in api_routes:
            for method in sorted(m.lower() for m in route.methods or ()):
                operation = schema["paths"][API_PREFIX + route.path][method]
                responses: dict[str, Any] = operation.setdefault("responses", {})
                found = errors_of(route, method, "requestBody" in operation)
                for status, codes in _by_status(found):
                    responses[str(status)] = {
                        "description": "error codes: " + ", ".join(codes),
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                        },
                    }
                key = (method, route.path)
                for status_text, description in EXTRA_ANSWERS.get(key, {}).items():
                    responses[status_text] = {"description": description}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
