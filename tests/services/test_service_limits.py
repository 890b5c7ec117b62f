"""The generation limiter: slots, a bounded queue, timeouts, and 429 over HTTP."""

from __future__ import annotations

import asyncio

import pytest

from services.limits import ConcurrencyLimiter, Overloaded


def test_slots_queue_and_overflow():
    async def scenario() -> None:
        lim = ConcurrencyLimiter(max_concurrent=2, queue_size=1, timeout_s=5, retry_after_s=3)
        a, b = await lim.acquire(), await lim.acquire()
        assert (lim.active, lim.waiting) == (2, 0)
        waiter = asyncio.create_task(lim.acquire())
        await asyncio.sleep(0.01)
        assert lim.waiting == 1
        with pytest.raises(Overloaded, match="2 generations running and 1 queued") as exc:
            await lim.acquire()
        assert exc.value.retry_after_s == 3
        a.release()
        a.release()  # idempotent: must not free a second slot
        c = await asyncio.wait_for(waiter, 1)
        assert (lim.active, lim.waiting) == (2, 0)
        b.release()
        c.release()
        assert lim.active == 0

    asyncio.run(scenario())


def test_wait_times_out():
    async def scenario() -> None:
        lim = ConcurrencyLimiter(max_concurrent=1, queue_size=4, timeout_s=0.05)
        held = await lim.acquire()
        with pytest.raises(Overloaded, match=r"no generation slot freed within 0\.05 s"):
            await lim.acquire()
        assert (lim.active, lim.waiting) == (1, 0)
        held.release()
        (await lim.acquire()).release()
        assert lim.active == 0

    asyncio.run(scenario())


def test_rejects_bad_configuration():
    with pytest.raises(ValueError, match="max_concurrent must be >= 1"):
        ConcurrencyLimiter(0, 1, 1.0)
