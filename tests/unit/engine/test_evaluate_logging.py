"""Logging, table-driven: LOG_FORMAT and LOG_LEVEL, written once and then left alone."""

from __future__ import annotations

from typing import Any

import pytest
from tests.support.engine_table import (
    app,
    ctr,
    env_list,
    pod,
    row_tests,
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


test_each_section, test_each_section_is_idempotent = row_tests(ROWS)
