from __future__ import annotations

import asyncio

from readiness.control.workqueue import RetryAfter, Workers, WorkQueue


async def test_duplicates_collapse_and_a_key_never_runs_twice_at_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    running: set[str] = set()
    overlaps = 0
    runs: list[str] = []
    gate = asyncio.Event()

    async def work(key: str) -> bool:
        nonlocal overlaps
        if key in running:
            overlaps += 1
        running.add(key)
        runs.append(key)
        await gate.wait()
        running.discard(key)
        return False

    workers: Workers[str] = Workers(queue, work, count=3)
    workers.start()
    for _ in range(5):
        queue.add("a")
    queue.add("b")
    await asyncio.sleep(0.05)
    queue.add("a")  # arrives while "a" runs: runs once more afterwards
    queue.add("a")
    gate.set()
    await asyncio.sleep(0.05)
    await workers.stop(grace=1)
    assert sorted(runs) == ["a", "a", "b"]
    assert overlaps == 0


async def test_failures_retry_with_backoff() -> None:
    queue: WorkQueue[str] = WorkQueue()
    attempts: list[float] = []
    loop = asyncio.get_running_loop()

    async def work(key: str) -> bool:
        attempts.append(loop.time())
        return len(attempts) < 2  # fail once

    workers: Workers[str] = Workers(queue, work, count=1)
    workers.start()
    queue.add("k")
    await asyncio.sleep(2.0)
    await workers.stop(grace=1)
    assert len(attempts) == 2
    assert attempts[1] - attempts[0] >= 0.9, "second attempt after backoff"


async def test_a_retry_after_the_server_asked_for_waits_that_long() -> None:
    """A 429's Retry-After is honoured: the key comes back no sooner than the server asked,
    though the backoff alone would have retried it sooner."""
    queue: WorkQueue[str] = WorkQueue()
    attempts: list[float] = []
    loop = asyncio.get_running_loop()

    async def work(key: str) -> bool | RetryAfter:
        attempts.append(loop.time())
        return RetryAfter(1.6) if len(attempts) < 2 else False

    workers: Workers[str] = Workers(queue, work, count=1)
    workers.start()
    queue.add("k")
    await asyncio.sleep(2.2)
    await workers.stop(grace=1)
    assert len(attempts) == 2
    assert attempts[1] - attempts[0] >= 1.55, "not before the server's Retry-After (the backoff was 1 s)"


async def test_stop_lets_in_flight_work_finish() -> None:
    queue: WorkQueue[str] = WorkQueue()
    finished: list[str] = []

    async def work(key: str) -> bool:
        await asyncio.sleep(0.2)
        finished.append(key)
        return False

    workers: Workers[str] = Workers(queue, work, count=1)
    workers.start()
    queue.add("k")
    await asyncio.sleep(0.05)
    await workers.stop(grace=5)
    assert finished == ["k"]
    queue.add("late")
    assert queue.depth == 0, "a closed queue takes no new work"
