"""Run creation checks the privacy policy with the nodes' own code: a 422 that names it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from starlette.testclient import TestClient

from services.aggregator.federation import Federation
from shared.privacy.accounting import dpsgd_epsilon
from shared.schemas import RunView

ClientAs = Callable[..., TestClient]


def _run(privacy: dict[str, object], **plan: object) -> dict[str, object]:
    return {"rounds": 3, "expected_nodes": ["site-1"], "privacy": privacy,
            "plan": {"max_steps": 10, **plan}}  # fmt: skip


@pytest.mark.parametrize(
    ("privacy", "plan", "detail"),
    [
        (
            {"mechanism": "svt", "epsilon": 300000},
            {},
            "privacy policy: the svt mechanism needs clip (gamma) > 0, but the policy has "
            "clip=None",
        ),
        (
            {"mechanism": "gaussian", "l2_clip": 0.1},
            {},
            "privacy policy: the gaussian mechanism needs noise_multiplier (sigma) > 0, but "
            "the policy has noise_multiplier=None",
        ),
        (
            {"mechanism": "dpsgd", "sample_rate": 0.1, "l2_clip": 1.0},
            {},
            "privacy policy: the dpsgd mechanism needs noise_multiplier (sigma) or "
            "target_epsilon, but the policy has neither",
        ),
        (
            {"mechanism": "dpsgd", "sample_rate": 0.1, "l2_clip": 1.0, "target_epsilon": 8},
            {"max_steps": None},
            "privacy policy: the dpsgd mechanism needs plan.max_steps (the DP-SGD steps per "
            "round), but the plan has max_steps=None",
        ),
        (
            {"mechanism": "svt", "epsilon": 10, "clip": 0.1, "metrics": "exact"},
            {},
            "privacy policy: metrics=exact would send losses and Dice unprotected beside a "
            "svt update; use metrics=withheld or metrics=laplace",
        ),
        (
            {"mechanism": "partial", "metrics": "laplace"},
            {},
            "privacy policy: metrics=laplace needs metrics_epsilon > 0, but the policy has "
            "metrics_epsilon=None",
        ),
    ],
)
def test_create_run_refuses_a_policy_that_cannot_run(
    client_as: ClientAs, privacy: dict[str, object], plan: dict[str, object], detail: str
) -> None:
    admin = client_as("admin")
    answer = admin.post("/api/v1/runs", json=_run(privacy, **plan))
    assert answer.status_code == 422
    assert answer.json() == {"detail": detail, "code": "policy_rejected"}
    assert admin.get("/api/v1/runs").json() == []


def test_create_run_derives_sigma_from_the_whole_run_target(client_as: ClientAs) -> None:
    privacy = {"mechanism": "dpsgd", "sample_rate": 0.1, "l2_clip": 1.0, "target_epsilon": 8.0}
    answer = client_as("admin").post("/api/v1/runs", json=_run(privacy))
    assert answer.status_code == 201
    run = RunView.model_validate(answer.json())
    sigma = run.privacy.noise_multiplier
    assert sigma is not None
    # 3 rounds of 10 steps: the whole run fits the target, and a slightly smaller sigma not.
    assert dpsgd_epsilon(sigma, 0.1, 30, 1e-5) <= 8.0
    assert dpsgd_epsilon(sigma - 2e-3, 0.1, 30, 1e-5) > 8.0


@pytest.mark.parametrize(
    ("field", "value"),
    [("round_timeout_s", 9e72), ("min_nodes", 10**6), ("seed", 2**63), ("rounds", "3")],
)
def test_create_run_refuses_numbers_out_of_range_or_of_the_wrong_type(
    client_as: ClientAs, federation: Federation, field: str, value: object
) -> None:
    body = {"rounds": 1, "expected_nodes": ["site-1"], field: value}
    answer = client_as("admin").post("/api/v1/runs", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"] == ["body", field]
    assert federation.list_runs() == []


@pytest.mark.parametrize(
    ("model", "words"),
    [
        ({"blocks_down": [1, 10**6], "blocks_up": [1]}, "less than or equal to 16"),
        ({"in_channels": 10**9}, "less than or equal to 16"),
        ({"blocks_down": [1, 2], "blocks_up": []}, "blocks_up must have one entry fewer"),
        ({"init_filters": 128, "blocks_down": [4] * 6, "blocks_up": [4] * 5},
         "M parameters, more than the 200 M"),
    ],
)  # fmt: skip
def test_create_run_refuses_a_model_nobody_could_build(
    client_as: ClientAs, federation: Federation, model: dict[str, object], words: str
) -> None:
    body = {"rounds": 1, "expected_nodes": ["site-1"], "model": model}
    answer = client_as("admin").post("/api/v1/runs", json=body)
    assert (answer.status_code, answer.json()["code"]) == (422, "validation_error")
    assert words in str(answer.json()["detail"])
    assert federation.list_runs() == []
