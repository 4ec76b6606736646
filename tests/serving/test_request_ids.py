"""Request ids: 32 hex digits, unique and with no structure between them."""

from __future__ import annotations

import itertools
import os
import re

from appliance.serving._ids import new_request_id

COUNT = 50_000


def test_request_ids_are_hex_digits() -> None:
    pattern = re.compile(r"[0-9a-f]{32}")
    for _ in range(1000):
        assert pattern.fullmatch(new_request_id())


def test_request_ids_unique() -> None:
    ids = [new_request_id() for _ in range(COUNT)]
    assert len(set(ids)) == COUNT


def test_consecutive_ids_share_no_structure() -> None:
    ids = [int(new_request_id(), 16) for _ in range(COUNT)]
    pairs = list(itertools.pairwise(ids))
    # Two random 128-bit ids differ in 64 bits on average, and the mean over
    # this many pairs has a standard deviation of about 0.03 bits. The
    # difference of two ids is spread over the whole range.
    distances = [(a ^ b).bit_count() for a, b in pairs]
    mean_distance = sum(distances) / len(distances)
    assert 63.0 < mean_distance < 65.0
    assert min(distances) > 20
    small_steps = sum(1 for a, b in pairs if abs(b - a) < 2**96)
    assert small_steps < 10
    shared_halves = sum(1 for a, b in pairs if a >> 64 == b >> 64)
    assert shared_halves == 0


def test_forked_child_draws_other_ids() -> None:
    new_request_id()
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(reader)
        os.write(writer, "".join(new_request_id() for _ in range(4)).encode())
        os._exit(0)
    os.close(writer)
    child = os.read(reader, 4096).decode()
    os.close(reader)
    os.waitpid(pid, 0)
    parent = "".join(new_request_id() for _ in range(4))
    assert len(child) == 128
    assert child != parent
