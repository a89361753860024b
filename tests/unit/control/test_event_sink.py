"""Events wait for the work in flight, keep the time of what they tell, and go at shutdown."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from readiness.control.events import EventSink
from readiness.k8s import ObjectRef
from readiness.observe.metrics import Metrics


class Recorder:
    def __init__(self) -> None:
        self.posted: list[tuple[str, float | None, float]] = []

    async def post_event(
        self, ref: ObjectRef, type_: str, reason: str, message: str, at: float | None = None
    ) -> None:
        self.posted.append((ref.name, at, time.time()))


def ref(name: str) -> ObjectRef:
    return ObjectRef("apps/v1", "Deployment", "shop", name, "uid")


async def test_an_event_waits_while_work_is_in_flight_and_keeps_its_time() -> None:
    recorder, busy = Recorder(), [True]
    sink = EventSink(recorder, Metrics(), busy=lambda: busy[0], rate=1000)  # type: ignore[arg-type]
    before = time.time()
    sink.post(ref("api"), "Normal", "ProfileApplied", "set probes")
    await asyncio.sleep(0.6)
    assert recorder.posted == [], "no Event while Deployments are being worked on"
    busy[0] = False
    await asyncio.sleep(0.4)
    assert [name for name, _, _ in recorder.posted] == ["api"]
    _, at, sent = recorder.posted[0]
    assert at is not None
    assert before <= at < before + 0.1 < sent, "stamped when it happened, sent later"
    sink.close()


async def test_drain_sends_what_waits_without_waiting() -> None:
    recorder = Recorder()
    sink = EventSink(recorder, Metrics(), busy=lambda: True, rate=1)  # type: ignore[arg-type]
    for name in ("a", "b", "c"):
        sink.post(ref(name), "Normal", "ProfileApplied", "set probes")
    async with asyncio.timeout(2):
        await sink.drain()
    assert sorted(name for name, _, _ in recorder.posted) == ["a", "b", "c"]
    sink.close()


async def test_events_are_paced() -> None:
    recorder: Any = Recorder()
    sink = EventSink(recorder, Metrics(), limit=2, rate=0.5)  # each sender: one post per 4 s
    for i in range(6):
        sink.post(ref(f"d{i}"), "Normal", "ProfileApplied", "set probes")
    await asyncio.sleep(0.5)
    assert len(recorder.posted) == 2, "one per sender, then each waits its pace"
    sink.close()
