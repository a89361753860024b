"""Logging, table-driven: LOG_FORMAT and LOG_LEVEL, written once and then left alone."""

from __future__ import annotations

from typing import Any

import pytest
from tests.support.engine_table import (
    SECTION_ROW,
    app,
    check_idempotence,
    check_the_first_apply,
    ctr,
    env_list,
    pod,
)

# The section's rows: the profile's sections, the Deployment's container, the checks, the apply's spec.
ROWS: list[Any] = [
    pytest.param(
        {"logging": {"format": "json", "level": "info"}},
        ctr(),
        ["logging.env.missing"],
        pod(app(env=env_list(("LOG_FORMAT", "json"), ("LOG_LEVEL", "info")))),
        id="logging",
    ),
    pytest.param(
        {"logging": {"level": "warn"}},
        ctr(),
        ["logging.env.missing"],
        pod(app(env=env_list(("LOG_LEVEL", "warn")))),
        id="logging-level-only",
    ),
]


@pytest.mark.parametrize(SECTION_ROW, ROWS)
def test_each_section(
    sections: dict[str, Any],
    container: dict[str, Any],
    expected_checks: list[str],
    expected_spec: dict[str, Any],
) -> None:
    check_the_first_apply(sections, container, expected_checks, expected_spec)


@pytest.mark.parametrize(SECTION_ROW, ROWS)
def test_each_section_is_idempotent(
    sections: dict[str, Any],
    container: dict[str, Any],
    expected_checks: list[str],
    expected_spec: dict[str, Any],
) -> None:
    check_idempotence(sections, container)
