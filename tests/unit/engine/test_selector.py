"""Label selectors with metav1.LabelSelector semantics; an empty selector matches nothing."""

from __future__ import annotations

from typing import Any

import pytest

from readiness.engine import matches
from readiness.models.profile import LabelSelector

LABELS = {"app.kubernetes.io/name": "checkout", "tier": "api", "track": "stable"}


def expr(key: str, operator: str, *values: str) -> dict[str, Any]:
    return {"matchExpressions": [{"key": key, "operator": operator, "values": list(values)}]}


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        # matchLabels: every pair must be present with that value.
        ({"matchLabels": {"app.kubernetes.io/name": "checkout"}}, LABELS, True),
        ({"matchLabels": {"app.kubernetes.io/name": "checkout", "tier": "api"}}, LABELS, True),
        ({"matchLabels": {"app.kubernetes.io/name": "checkout", "tier": "worker"}}, LABELS, False),
        ({"matchLabels": {"app.kubernetes.io/name": "payments"}}, LABELS, False),
        ({"matchLabels": {"missing": "x"}}, LABELS, False),
        ({"matchLabels": {"tier": ""}}, LABELS, False),
        ({"matchLabels": {"tier": "api"}}, {}, False),
        # In: the key is present with one of the values.
        (expr("tier", "In", "api", "web"), LABELS, True),
        (expr("tier", "In", "worker"), LABELS, False),
        (expr("absent", "In", "api"), LABELS, False),
        # NotIn: the key is absent or has none of the values.
        (expr("tier", "NotIn", "worker"), LABELS, True),
        (expr("tier", "NotIn", "api", "worker"), LABELS, False),
        (expr("absent", "NotIn", "api"), LABELS, True),
        # Exists / DoesNotExist look at the key only.
        (expr("tier", "Exists"), LABELS, True),
        (expr("absent", "Exists"), LABELS, False),
        (expr("tier", "Exists"), {"tier": ""}, True),
        (expr("absent", "DoesNotExist"), LABELS, True),
        (expr("tier", "DoesNotExist"), LABELS, False),
        # Everything must hold at once.
        (
            {
                "matchLabels": {"app.kubernetes.io/name": "checkout"},
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["api"]},
                    {"key": "track", "operator": "NotIn", "values": ["canary"]},
                    {"key": "legacy", "operator": "DoesNotExist"},
                ],
            },
            LABELS,
            True,
        ),
        (
            {
                "matchLabels": {"app.kubernetes.io/name": "checkout"},
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["api"]},
                    {"key": "track", "operator": "In", "values": ["canary"]},
                ],
            },
            LABELS,
            False,
        ),
        (
            {"matchLabels": {"app.kubernetes.io/name": "payments"}, **expr("tier", "Exists")},
            LABELS,
            False,
        ),
    ],
)
def test_matches(selector: dict[str, Any], labels: dict[str, str], expected: bool) -> None:
    assert matches(LabelSelector.model_validate(selector), labels) is expected


@pytest.mark.parametrize(
    "selector",
    [{}, {"matchLabels": {}}, {"matchExpressions": []}, {"matchLabels": {}, "matchExpressions": []}],
)
@pytest.mark.parametrize("labels", [{}, LABELS])
def test_an_empty_selector_matches_nothing(selector: dict[str, Any], labels: dict[str, str]) -> None:
    assert matches(LabelSelector.model_validate(selector), labels) is False
