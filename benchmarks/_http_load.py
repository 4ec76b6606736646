"""A fixed number of HTTP/1.1 POSTs over keep-alive connections, for memory runs.

wrk runs for a fixed time, so a faster build of the daemon would receive more
requests and look bigger. Memory is therefore compared after the same request
count.
"""

from __future__ import annotations

import asyncio
import time


async def _connection(
    host: str, port: int, request: bytes, counter: list[int], total: int
) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    errors = 0
    try:
        while counter[0] < total:
            counter[0] += 1
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            errors += status != 200
    finally:
        writer.close()
    return errors


def post_many(
    url_host: str, port: int, path: str, body: bytes, total: int, connections: int
) -> tuple[float, int]:
    """Send `total` POSTs of `body` over `connections` connections.

    Returns:
        The requests per second and the number of responses other than 200.
    """
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {url_host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body

    async def run() -> int:
        counter = [0]
        results = await asyncio.gather(
            *(
                _connection(url_host, port, request, counter, total)
                for _ in range(connections)
            )
        )
        return sum(results)

    started = time.perf_counter()
    errors = asyncio.run(run())
    return total / (time.perf_counter() - started), errors
