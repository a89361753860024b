from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import pytest

from readiness.control.peering import PeeringGate, draw_priority, outranked

NOW = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


def peer(priority: int, seconds_ago: int, lifetime: int = 30) -> dict[str, Any]:
    return {
        "priority": priority,
        "lifetime": lifetime,
        "lastseen": (NOW - dt.timedelta(seconds=seconds_ago)).isoformat(),
    }


@pytest.mark.parametrize(
    ("peers", "expected"),
    [
        ({}, False),
        ({"me": peer(100, 0)}, False),
        ({"me": peer(100, 0), "other": peer(50, 0)}, False),
        ({"me": peer(100, 0), "other": peer(200, 5)}, True),
        ({"me": peer(100, 0), "other": peer(200, 31)}, False),  # its lifetime ran out: dead
        ({"me": peer(100, 0), "other": peer(100, 0)}, True),  # a tie pauses everyone (kopf)
        ({"me": peer(100, 0), "broken": {"priority": "x"}}, False),
    ],
)
def test_outranked(peers: dict[str, Any], expected: bool) -> None:
    assert outranked(peers, "me", 100, NOW) is expected


def test_random_priorities_do_not_tie() -> None:
    assert draw_priority(42) == 42
    assert len({draw_priority(0) for _ in range(50)}) == 50


async def test_gate_reads_the_peering_object_of_the_namespace() -> None:
    seen: list[str | None] = []

    async def read(scope: str | None) -> Mapping[str, Any] | None:
        seen.append(scope)
        lastseen = dt.datetime.now(dt.UTC).isoformat()
        return {"status": {"big": {"priority": 1000, "lifetime": 60, "lastseen": lastseen}}}

    gate = PeeringGate(read, me="small", priority=1, clusterwide=False)
    assert await gate.active("shop") is False
    assert await gate.active("shop") is False
    assert seen == ["shop"], "cached"
    assert await PeeringGate(None, me="x", priority=1, clusterwide=True).active("shop") is True
