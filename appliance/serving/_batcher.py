"""Micro-batching: concurrent prediction requests combined into one session run.

Each request converts its own rows to an ONNX feed first, so a bad row fails
only its own request. Feeds then wait in a per-model queue. A batch starts as
soon as a worker thread is free. It waits up to ``max_wait`` only while other
requests have announced themselves (their bodies are being read) and the batch
is below ``max_rows``, so a lone request on an idle model never waits. While
every worker is busy, arriving requests pile up and go out together as the
next batch, which is what makes the batching adapt to the load.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from appliance.serving._onnx import OnnxModel

logger = logging.getLogger(__name__)

INLINE_MAX_ROWS = 16
"""Largest request whose session may run on the event loop when it is alone.

On the 2-core benchmark machine one row of the 300-tree flights LightGBM model
ran in about 30 us and 32 rows in about 150 us, so an inline run blocks the
loop for about 0.1 ms at most with that model."""


@dataclass(frozen=True)
class BatchSettings:
    """Micro-batching settings of one model."""

    enabled: bool = True
    """Whether concurrent requests are combined; when false, each runs alone."""
    max_rows: int = 256
    """Maximum rows in one session run."""
    max_wait: float = 0.001
    """Maximum wait for announced requests, in seconds."""
    workers: int = 1
    """Session runs of this model that may be in progress at once."""


_Pending = tuple[dict[str, np.ndarray], int, "asyncio.Future[list[dict[str, Any]]]"]


class MicroBatcher:
    """Queue of feeds for one model, run in batches on an executor.

    Args:
        model: The model version whose session runs the batches.
        executor: Thread pool that runs the sessions off the event loop.
        settings: Batch size, wait and worker limits.
        on_batch: Called with the rows of every session run, for metrics.
    """

    def __init__(
        self,
        model: OnnxModel,
        executor: Executor,
        settings: BatchSettings,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.model = model
        self.settings = settings
        self._executor = executor
        self._on_batch = on_batch
        self._pending: list[_Pending] = []
        self._pending_rows = 0
        self._announced = 0
        self._running = 0
        self._yielding = 0
        """Requests that found the model idle and yield once before running inline."""
        self._timer: asyncio.TimerHandle | None = None

    def announce(self) -> None:
        """Tell the batcher that a request is being received and will follow."""
        self._announced += 1

    def withdraw(self) -> None:
        """Cancel an `announce` whose request failed before `predict`."""
        self._announced -= 1

    async def predict(
        self, feed: dict[str, np.ndarray], rows: int, announced: bool = False
    ) -> list[dict[str, Any]]:
        """Predict the rows of `feed` and return one JSON-ready result per row.

        Args:
            feed: ONNX feed of this request alone.
            rows: Number of rows in `feed`.
            announced: Whether this request called `announce` before.
        """
        if announced:
            self._announced -= 1
        settings = self.settings
        if settings.enabled and rows <= INLINE_MAX_ROWS and self._idle():
            self._yielding += 1
            try:
                await asyncio.sleep(0)
            finally:
                self._yielding -= 1
            if self._idle():
                return self._run_inline(feed, rows)
        loop = asyncio.get_running_loop()
        if not settings.enabled or rows >= settings.max_rows:
            results = await loop.run_in_executor(
                self._executor, _run_batch, self.model, [feed], [rows]
            )
            if self._on_batch is not None:
                self._on_batch(rows)
            return results[0]
        future: asyncio.Future[list[dict[str, Any]]] = loop.create_future()
        self._pending.append((feed, rows, future))
        self._pending_rows += rows
        self._dispatch()
        return await future

    def _idle(self) -> bool:
        """Tell whether no other request of this model is queued, running or near."""
        return (
            not self._running
            and not self._pending
            and not self._announced
            and not self._yielding
        )

    def _run_inline(
        self, feed: dict[str, np.ndarray], rows: int
    ) -> list[dict[str, Any]]:
        """Run one request's session on the event loop; see the module docstring."""
        try:
            (results,) = _run_batch(self.model, [feed], [rows])
        except Exception:
            logger.exception(
                "session run failed model=%s version=%d rows=%d",
                self.model.name,
                self.model.version,
                rows,
            )
            raise
        finally:
            if self._on_batch is not None:
                self._on_batch(rows)
        return results

    def _dispatch(self, timer_fired: bool = False) -> None:
        """Start batches while a worker is free and there is work to send."""
        if timer_fired:
            self._timer = None
        settings = self.settings
        while self._pending and self._running < settings.workers:
            full = self._pending_rows >= settings.max_rows
            waiting = self._announced > 0 and settings.max_wait > 0
            if not full and waiting and not timer_fired:
                if self._timer is None:
                    loop = asyncio.get_running_loop()
                    self._timer = loop.call_later(
                        settings.max_wait, self._dispatch, True
                    )
                return
            self._start_batch()
            timer_fired = False

    def _start_batch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch: list[_Pending] = []
        rows = 0
        limit = self.settings.max_rows
        while self._pending and (not batch or rows + self._pending[0][1] <= limit):
            item = self._pending.pop(0)
            batch.append(item)
            rows += item[1]
        self._pending_rows -= rows
        self._running += 1
        asyncio.ensure_future(self._run(batch, rows))

    async def _run(self, batch: list[_Pending], rows: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(
                self._executor,
                _run_batch,
                self.model,
                [feed for feed, _, _ in batch],
                [count for _, count, _ in batch],
            )
        except Exception as exc:
            logger.exception(
                "session run failed model=%s version=%d rows=%d",
                self.model.name,
                self.model.version,
                rows,
            )
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        else:
            for (_, _, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)
        finally:
            self._running -= 1
            if self._on_batch is not None:
                self._on_batch(rows)
            self._dispatch()


def _run_batch(
    model: OnnxModel, feeds: list[dict[str, np.ndarray]], counts: list[int]
) -> list[list[dict[str, Any]]]:
    """Run one session call over every feed and split the formatted results."""
    if len(feeds) == 1:
        feed = feeds[0]
    else:
        feed = {name: np.concatenate([f[name] for f in feeds]) for name in feeds[0]}
    formatted = model.format(model.run(feed))
    results = []
    start = 0
    for count in counts:
        results.append(formatted[start : start + count])
        start += count
    return results
