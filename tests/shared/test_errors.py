"""The error hierarchy is the one table of statuses and wire codes."""

from __future__ import annotations

from shared import errors


def test_every_error_class_has_a_unique_code() -> None:
    classes = errors.error_classes()
    codes = [kind.code for kind in classes]
    assert len(set(codes)) == len(codes), sorted(c for c in codes if codes.count(c) > 1)
    assert all(code.isidentifier() and code.islower() for code in codes)
    assert len(classes) >= 25


def test_a_code_names_its_class_and_nothing_else_names_one() -> None:
    for kind in errors.error_classes():
        assert errors.for_code(kind.code) is kind
    assert errors.for_code("no_such_code") is None
    assert errors.for_code(None) is None
    assert errors.for_code(409) is None


def test_statuses_are_those_the_api_documents() -> None:
    expected = {
        errors.InvalidRequestError: 400,
        errors.MalformedUpdateError: 400,
        errors.AuthenticationRequiredError: 401,
        errors.CertificateRevokedError: 403,
        errors.NotFoundError: 404,
        errors.StaleModelError: 409,
        errors.ProtocolMismatchError: 409,
        errors.PayloadTooLargeError: 413,
        errors.NonFiniteError: 422,
        errors.PolicyRejectedError: 422,
        errors.StorageError: 503,
        errors.StorageFullError: 507,
        errors.ConfigurationError: 500,
    }
    assert {kind: kind.status for kind in expected} == expected


def test_a_protocol_mismatch_is_not_a_conflict_a_node_moves_past() -> None:
    assert not issubclass(errors.ProtocolMismatchError, errors.ConflictError)
