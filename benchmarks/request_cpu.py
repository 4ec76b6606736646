"""CPU time per single-row predict request, measured in process over ASGI.

The daemon's app (with and without the predict lane, and behind the access
gate with ``[security] require_keys`` and a bearer key) and the bare Litestar
endpoint of `bare_litestar.py` are called directly with ASGI messages, one
request at a time, so no socket, HTTP parser or load generator runs. The CPU
time of the whole process (every thread: the event loop, session threads,
the prediction log writer and the monitors) and of the event loop's thread
are divided by the number of requests. CPU time, unlike wrk's wall-clock
figures, changes little when other work shares the machine.

It reuses the home of `benchmarks/serving.py` and trains the model there
when it is missing, so no daemon may be running on that home. Run from the
repository with the project venv:
    .venv/bin/python benchmarks/request_cpu.py [--requests N] [--repeats N]
Writes the "Predict request CPU time" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import serving
from _page import write_section

SECTION = "## Predict request CPU time, in process"
KEYED = "appliance, key required"
VARIANTS = ("appliance", KEYED, "appliance without the lane", "bare Litestar")


def _scope(path: str, body: bytes, token: str | None) -> dict[str, Any]:
    headers = [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "POST",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "state": {},
    }


async def _call(
    app: Any, path: str, body: bytes, token: str | None = None
) -> list[dict[str, Any]]:
    """Send one request to `app` and return the response messages."""
    sent = False
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await app(_scope(path, body, token), receive, send)
    return messages


async def _start(app: Any) -> tuple[asyncio.Queue, asyncio.Queue]:
    """Run the app's lifespan startup and return its message queues."""
    inbox: asyncio.Queue = asyncio.Queue()
    outbox: asyncio.Queue = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    asyncio.ensure_future(app(scope, inbox.get, outbox.put))
    message = await outbox.get()
    if message["type"] != "lifespan.startup.complete":
        raise SystemExit(f"the app failed to start: {message}; see the log above")
    return inbox, outbox


async def _measure(variant: str, body: bytes, requests: int) -> dict[str, float]:
    token = None
    if variant == "bare Litestar":
        sys.argv = ["bare_litestar.py", str(serving.prepare_model()), "0"]
        import bare_litestar

        app: Any = bare_litestar.app
        path = "/predict"
        queues = None
    else:
        from appliance.config import load_config
        from appliance.daemon import build_app
        from appliance.serving import DaemonState, ServingMetrics

        config = load_config(serving.write_config(8000))
        if variant == KEYED:
            token = _new_key(config)
            security = dataclasses.replace(config.security, require_keys=True)
            config = dataclasses.replace(config, security=security)
        state = DaemonState(
            config=dataclasses.replace(config),
            metrics=ServingMetrics(),
            host="127.0.0.1",
            port=8000,
        )
        app = build_app(state)
        queues = await _start(app)
        if variant in ("appliance", KEYED):
            from appliance.serving import AccessGate, PredictLane

            app = PredictLane(app)
            if variant == KEYED:
                app = AccessGate(app, state)
        path = f"/v1/models/{serving.MODEL}/predict"
    if queues is None:
        await _start(app)
    for _ in range(200):
        await _call(app, path, body, token)
    gc.collect()
    process, thread = time.process_time(), time.thread_time()
    for _ in range(requests):
        messages = await _call(app, path, body, token)
    process, thread = time.process_time() - process, time.thread_time() - thread
    if messages[0]["status"] != 200:
        raise SystemExit(f"{variant} failed the last request: {messages}")
    if queues is not None:
        # Stopping the daemon's parts writes the logged rows; it is not timed.
        await queues[0].put({"type": "lifespan.shutdown"})
        await queues[1].get()
    return {
        "process_us": process / requests * 1e6,
        "loop_us": thread / requests * 1e6,
    }


def _new_key(config: Any) -> str:
    """Create a predictor key in the benchmark's catalog and return its token."""
    from appliance.access import create_key
    from appliance.storage import Catalog

    with Catalog(config.storage.home) as catalog:
        return create_key(catalog, f"bench-{os.getpid()}", "predictor")[1]


def _child(variant: str, requests: int) -> None:
    import uvloop

    body = json.dumps({"rows": [json.loads(os.environ["REQUEST_ROW"])]}).encode()
    result = uvloop.run(_measure(variant, body, requests))
    print(json.dumps(result))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.requests)
        return 0
    serving.prepare_model()
    row = json.dumps(serving.filled_row())
    load = os.getloadavg()[0]
    results: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for repeat in range(args.repeats):
        for variant in VARIANTS:
            # One process per run, pinned to CPU 0 like the serving benchmark.
            output = subprocess.run(
                ["taskset", "-c", "0", sys.executable, __file__, "--child", variant]
                + ["--requests", str(args.requests)],
                env={
                    **os.environ,
                    "REQUEST_ROW": row,
                    "APPLIANCE_HOME": str(serving.HOME),
                },
                capture_output=True,
                text=True,
                check=True,
                cwd=Path(__file__).parent,
            ).stdout
            result = json.loads(output.strip().splitlines()[-1])
            results[variant].append(result)
            print(f"{repeat} {variant}: {result}", flush=True)
    write_report(results, args, load)
    return 0


def write_report(results: dict[str, list[dict[str, float]]], args, load) -> None:
    median = {
        variant: {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        for variant, runs in results.items()
    }
    bare = median["bare Litestar"]["process_us"]
    lines = [
        SECTION,
        "",
        (
            "Written by `benchmarks/request_cpu.py`: one single-row JSON request at a "
            "time, sent as ASGI messages to the app in process (no socket or HTTP "
            f"parser), {args.requests} requests per run, median of {args.repeats} "
            "runs, each in its own process pinned to CPU 0."
        ),
        "",
        (
            f"- {platform.platform()}, Python {platform.python_version()}, "
            f"{os.cpu_count()} CPUs; load average {load:.2f} at the start (shared "
            "machine)."
        ),
        (
            "- Process CPU counts every thread: event loop, session threads, "
            "prediction log writer, monitors. Loop CPU counts the event loop's "
            "thread only."
        ),
        "",
        (
            "| app | process CPU us/request | loop CPU us/request | process CPU "
            "against bare |"
        ),
        "| --- | ---: | ---: | ---: |",
    ]
    for variant in VARIANTS:
        m = median[variant]
        lines.append(
            f"| {variant} | {m['process_us']:.0f} | {m['loop_us']:.0f} | "
            f"{m['process_us'] / bare:.2f}x |"
        )
    write_section(SECTION[3:], "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
