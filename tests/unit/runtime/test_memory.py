from __future__ import annotations

import asyncio
import gc

from readiness.runtime.memory import YOUNG_THRESHOLD, Trimmer, _trimmer, settle_collector
from readiness.runtime.periodic import Every


async def test_the_heap_is_trimmed_once_after_work_and_never_while_busy() -> None:
    trims: list[int] = []
    state = {"busy": True, "worked": 0}
    trimmer = Trimmer(
        busy=lambda: bool(state["busy"]), worked=lambda: int(state["worked"]), trim=lambda: trims.append(1)
    )
    every = Every(0.02, trimmer.tick, "trim")
    every.start()
    state["worked"] = 5
    await asyncio.sleep(0.1)
    assert trims == [], "not while work is in progress"
    state["busy"] = False
    await asyncio.sleep(0.1)
    assert trims == [1], "once, then nothing until more work is done"
    state["worked"] = 6
    await asyncio.sleep(0.1)
    every.stop()
    assert trims == [1, 1]


def test_glibc_offers_malloc_trim_here() -> None:
    trim = _trimmer()
    assert trim is not None
    trim()


def test_what_was_imported_is_left_out_of_collections() -> None:
    before = gc.get_threshold()
    try:
        settle_collector()
        assert gc.get_freeze_count() > 10_000, "the imports' objects"
        assert gc.get_threshold() == (YOUNG_THRESHOLD, *before[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
