"""MicroBatcher in process: requests that wait while a batch runs go out together."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from daemon_support import MODEL, row

from appliance.config import load_config
from appliance.serving import BatchSettings, MicroBatcher, OnnxModel, rows_to_feed
from appliance.serving._batcher import INLINE_MAX_ROWS
from appliance.signing import trusted_keys
from appliance.storage import Catalog, get_version


@pytest.fixture(scope="module")
def model(trained_home: Path) -> OnnxModel:
    with Catalog(trained_home, read_only=True) as catalog:
        version = get_version(catalog, MODEL, None)
    trusted = trusted_keys(load_config(trained_home.parent / "config.toml"))
    return OnnxModel.load(version.path, version.sha256, trusted=trusted)


def predict_all(model: OnnxModel, settings: BatchSettings, count: int) -> tuple:
    batches: list[int] = []
    rows = [row(i) for i in range(count)]

    async def main() -> list:
        with ThreadPoolExecutor(settings.workers) as executor:
            batcher = MicroBatcher(model, executor, settings, batches.append)
            feeds = [rows_to_feed(MODEL, model.inputs, [r]) for r in rows]
            return await asyncio.gather(*(batcher.predict(f, 1) for f in feeds))

    return asyncio.run(main()), batches, model.predict_rows(rows)


def test_waiting_requests_share_one_run(model: OnnxModel) -> None:
    settings = BatchSettings(enabled=True, max_rows=64, max_wait=0.0, workers=1)
    results, batches, expected = predict_all(model, settings, 10)
    assert batches == [1, 9]
    for (result,), want in zip(results, expected):
        assert result["label"] == want["label"]
        assert result["probabilities"]["1"] == pytest.approx(
            want["probabilities"]["1"], abs=1e-6
        )


def test_batches_stop_at_max_rows(model: OnnxModel) -> None:
    settings = BatchSettings(enabled=True, max_rows=4, max_wait=0.0, workers=1)
    _, batches, _ = predict_all(model, settings, 10)
    assert batches == [1, 4, 4, 1]


def test_batching_off_runs_each_request(model: OnnxModel) -> None:
    settings = BatchSettings(enabled=False, max_rows=64, max_wait=0.0, workers=1)
    results, batches, _ = predict_all(model, settings, 5)
    assert batches == [1, 1, 1, 1, 1]
    assert len(results) == 5


def test_announced_request_is_waited_for(model: OnnxModel) -> None:
    batches: list[int] = []
    settings = BatchSettings(enabled=True, max_rows=64, max_wait=0.5, workers=1)

    async def main() -> None:
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(model, executor, settings, batches.append)
            feed = rows_to_feed(MODEL, model.inputs, [row(0)])
            batcher.announce()
            batcher.announce()

            async def late() -> None:
                await asyncio.sleep(0.05)
                await batcher.predict(feed, 1, announced=True)

            await asyncio.gather(batcher.predict(feed, 1, announced=True), late())

    asyncio.run(main())
    assert batches == [2]


class CountingExecutor(ThreadPoolExecutor):
    """Thread pool that counts the session runs handed to it."""

    submitted = 0

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        self.submitted += 1
        return super().submit(*args, **kwargs)


def run_lone(model: OnnxModel, rows: int, announced_others: int = 0) -> tuple:
    batches: list[int] = []
    settings = BatchSettings(enabled=True, max_rows=64, max_wait=0.0, workers=1)
    feed = rows_to_feed(MODEL, model.inputs, [row(i) for i in range(rows)])

    async def main() -> tuple:
        with CountingExecutor(1) as executor:
            batcher = MicroBatcher(model, executor, settings, batches.append)
            for _ in range(announced_others):
                batcher.announce()
            result = await batcher.predict(feed, rows)
            return result, executor.submitted

    result, submitted = asyncio.run(main())
    return result, submitted, batches


def test_lone_small_request_runs_inline(model: OnnxModel) -> None:
    result, submitted, batches = run_lone(model, 1)
    (expected,) = model.predict_rows([row(0)])
    assert submitted == 0
    assert batches == [1]
    assert result[0]["label"] == expected["label"]


def test_large_or_awaited_request_uses_worker(model: OnnxModel) -> None:
    _, large_submitted, large_batches = run_lone(model, INLINE_MAX_ROWS + 1)
    _, awaited_submitted, _ = run_lone(model, 1, announced_others=1)
    assert large_submitted == 1
    assert large_batches == [INLINE_MAX_ROWS + 1]
    assert awaited_submitted == 1
