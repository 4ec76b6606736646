"""CPU time of the access gate per request, without the app behind it.

`AccessGate` wraps an ASGI app that does nothing, with ``require_keys`` set
and 21 active keys, and serves a predict request with a valid bearer key.
The same loop over the bare app gives the cost of the loop itself. Run from
the repository with the project venv:
    .venv/bin/python benchmarks/access_gate.py [--requests N]
Compare the result with the process CPU per predict request in the
"Predict request CPU time" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import types
from typing import Any

from appliance.access import Actor, KeyHolder
from appliance.access._keys import hash_token
from appliance.config import SecurityConfig
from appliance.serving import AccessControl, AccessGate

TOKEN = "apk_" + "x" * 43


async def _nothing(scope: Any, receive: Any, send: Any) -> None:
    return None


def _gate() -> AccessGate:
    keys = {
        hash_token(f"apk_{i:043d}"): KeyHolder(Actor(f"k{i}", "predictor"))
        for i in range(20)
    }
    keys[hash_token(TOKEN)] = KeyHolder(Actor("bench", "predictor"))
    security = SecurityConfig(require_keys=True)
    state = types.SimpleNamespace(
        access=AccessControl(keys), config=types.SimpleNamespace(security=security)
    )
    return AccessGate(_nothing, state)  # type: ignore[arg-type]


_SCOPE = {
    "type": "http",
    "method": "POST",
    "path": "/v1/models/flights_late/predict",
    "headers": [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"content-length", b"300"),
        (b"authorization", f"Bearer {TOKEN}".encode()),
    ],
}


async def _per_request(app: Any, requests: int) -> float:
    """Return the process CPU time per call of `app`, in microseconds."""
    started = time.process_time()
    for _ in range(requests):
        await app(_SCOPE, None, None)
    return (time.process_time() - started) / requests * 1e6


async def _main(requests: int) -> None:
    gate = _gate()
    for _ in range(3):
        bare = await _per_request(_nothing, requests)
        gated = await _per_request(gate, requests)
        print(f"without gate {bare:.2f} us, with gate {gated:.2f} us per request")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    args = parser.parse_args()
    asyncio.run(_main(args.requests))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
