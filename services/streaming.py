"""Run a sampler in a worker thread and stream its output block by block, with bounded memory.

The sampler's ``iter_blocks`` is a blocking generator (torch releases the GIL while computing).
:class:`BlockStream` turns it into an async iterator of encoded chunks: block ``b + 1`` is
generated in the worker thread while block ``b`` is being sent, so generation and transport
overlap, and at most two encoded blocks exist at any time whatever ``n``.

Cleanup is the delicate part. When the client disconnects, the server cancels the response
task, possibly while a block is still being computed in the thread. The blocking generator
cannot be closed while it runs, so the cleanup (close the generator, release the limiter
slot) is attached to the running block's future and happens as soon as that block finishes.
:class:`GenerationResponse` makes sure the async iterator itself is always closed, even when
the cancellation arrives while it is suspended at ``yield``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

__all__ = ["BlockStream", "GenerationResponse", "run_blocking"]

T = TypeVar("T")
_DONE = object()


async def run_blocking(executor: concurrent.futures.Executor, fn: Callable[[], T]) -> T:
    """Run ``fn`` in ``executor`` and await it (cancelling the await does not kill the thread)."""
    return await asyncio.wrap_future(executor.submit(fn))


class BlockStream:
    """Async iterator of ``encode(block)`` for each block of ``blocks``, computed one block ahead in ``executor``.

    ``prefix`` (e.g. an npy header) is yielded first, while the first block is already being
    generated. ``on_close()`` runs exactly once, in the event loop, after the blocking generator
    has stopped and been closed: normal end, error, or :meth:`aclose` (also before the first
    item). ``on_chunk(block, chunk)`` runs before each block's chunk is returned.
    """

    def __init__(
        self,
        executor: concurrent.futures.Executor,
        blocks: Iterator[Any],
        encode: Callable[[Any], bytes],
        on_close: Callable[[], None],
        on_chunk: Callable[[Any, bytes], None] | None = None,
        prefix: bytes | None = None,
    ) -> None:
        self._executor = executor
        self._blocks = blocks
        self._encode = encode
        self._on_close = on_close
        self._on_chunk = on_chunk
        self._prefix = prefix
        self._pending: concurrent.futures.Future | None = None
        self._closed = False
        self._finished = threading.Lock()  # held once finish() has run
        self._loop: asyncio.AbstractEventLoop | None = None

    def __aiter__(self) -> BlockStream:
        return self

    def _next_item(self) -> tuple[Any, bytes] | object:
        block = next(self._blocks, _DONE)
        if block is _DONE:
            return _DONE
        return block, self._encode(block)

    def _submit(self) -> None:
        self._pending = self._executor.submit(self._next_item)

    async def __anext__(self) -> bytes:
        if self._closed:
            raise StopAsyncIteration
        self._loop = asyncio.get_running_loop()
        if self._pending is None:
            self._submit()
        if self._prefix is not None:
            prefix, self._prefix = self._prefix, None
            return prefix
        try:
            item = await asyncio.wrap_future(self._pending)
        except BaseException:
            await self.aclose()
            raise
        if item is _DONE:
            await self.aclose()
            raise StopAsyncIteration
        self._submit()  # prefetch: generate the next block while this one is sent
        block, chunk = item
        if self._on_chunk is not None:
            self._on_chunk(block, chunk)
        return chunk

    def _finish(self) -> None:
        # Runs in the loop or in the worker thread, whichever sees the generator stop last.
        if not self._finished.acquire(blocking=False):
            return
        with contextlib.suppress(Exception):
            self._blocks.close()  # type: ignore[attr-defined]
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._on_close)
        else:
            self._on_close()

    async def aclose(self) -> None:
        """Stop: free everything now, or as soon as the block being computed is finished."""
        if self._closed:
            return
        self._closed = True
        self._loop = asyncio.get_running_loop()
        pending, self._pending = self._pending, None
        if pending is None or pending.done():
            self._finish()
        else:
            # The worker is inside next(blocks); a running generator cannot be closed, so close it
            # (in the worker thread) as soon as that block is done.
            pending.add_done_callback(lambda _f: self._finish())


class GenerationResponse(StreamingResponse):
    """A ``StreamingResponse`` that always closes its body iterator when it is done.

    Starlette abandons the iterator when the client disconnects while a chunk is being sent;
    closing it here runs the cleanup (and so frees the generation slot) at once instead of
    whenever the garbage collector gets to it.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()
