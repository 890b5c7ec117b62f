"""Admission control: at most ``max_concurrent`` generations at once, a bounded queue, then 429.

Generation is CPU/GPU bound, so running more requests at once only makes each slower; a few
slots plus a short queue keep latency predictable and memory bounded. A request that finds the
queue full, or waits longer than ``timeout_s``, gets :class:`Overloaded` (HTTP 429 with
``Retry-After``). A slot is held until the response has been fully streamed or the client has
gone away; :meth:`ConcurrencyLimiter.release` is idempotent per :class:`Slot`.
"""

from __future__ import annotations

import asyncio

__all__ = ["ConcurrencyLimiter", "Overloaded", "Slot"]


class Overloaded(Exception):
    """No generation slot is free and the wait queue is full (or the wait timed out)."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Slot:
    """One held generation slot; :meth:`release` gives it back (safe to call more than once)."""

    def __init__(self, limiter: ConcurrencyLimiter) -> None:
        self._limiter = limiter
        self._released = False

    def release(self) -> None:
        """Return the slot to the limiter."""
        if not self._released:
            self._released = True
            self._limiter._release()


class ConcurrencyLimiter:
    """Counting semaphore with a bounded number of waiters, for use inside one event loop."""

    def __init__(self, max_concurrent: int, queue_size: int, timeout_s: float, retry_after_s: int = 5) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
        self.max_concurrent = max_concurrent
        self.queue_size = queue_size
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self.active = 0  # slots held now
        self.waiting = 0  # requests queued for a slot
        self._cond: asyncio.Condition | None = None
        self._wakeups: set[asyncio.Task[None]] = set()  # strong refs so pending wake-ups are not collected

    def _condition(self) -> asyncio.Condition:
        # Created lazily so the limiter can be built outside a running loop (app factory).
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    async def acquire(self) -> Slot:
        """Wait for a slot; raises :class:`Overloaded` if the queue is full or the wait times out."""
        cond = self._condition()
        async with cond:
            if self.active < self.max_concurrent and self.waiting == 0:
                self.active += 1
                return Slot(self)
            if self.waiting >= self.queue_size:
                raise Overloaded(
                    f"server busy: {self.active} generations running and {self.waiting} queued "
                    f"(limit {self.max_concurrent} + {self.queue_size}); retry in {self.retry_after_s} s",
                    self.retry_after_s,
                )
            self.waiting += 1
            try:
                await asyncio.wait_for(cond.wait_for(lambda: self.active < self.max_concurrent), self.timeout_s)
            except TimeoutError:
                raise Overloaded(
                    f"server busy: no generation slot freed within {self.timeout_s:g} s; "
                    f"retry in {self.retry_after_s} s",
                    self.retry_after_s,
                ) from None
            finally:
                self.waiting -= 1
            self.active += 1
            return Slot(self)

    def _release(self) -> None:
        self.active -= 1
        cond = self._condition()

        async def _notify() -> None:
            async with cond:
                cond.notify(1)

        # Release is called from finally blocks (possibly during cancellation), so it must not
        # await; waking a waiter is scheduled instead.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self.waiting:
            task = loop.create_task(_notify())
            self._wakeups.add(task)
            task.add_done_callback(self._wakeups.discard)
