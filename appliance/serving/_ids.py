"""Request ids: 128 random bits as 32 hex digits, drawn in blocks."""

from __future__ import annotations

import os
import threading

_IDS_PER_BLOCK = 256
_ID_BYTES = 16
_ID_DIGITS = 2 * _ID_BYTES


class _RandomIds:
    """A block of ``os.urandom`` bytes in hex, sliced into request ids.

    One read of the system's random source serves `_IDS_PER_BLOCK` ids, so an
    id costs a slice of a string instead of a system call (uuid4 makes one
    per id). Every id is 128 bits from the kernel's random source, so one id
    reveals nothing about the next.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._block = ""
        self._offset = 0

    def next(self) -> str:
        """Return a new request id of 32 hex digits."""
        with self._lock:
            offset = self._offset
            if offset >= len(self._block):
                self._block = os.urandom(_IDS_PER_BLOCK * _ID_BYTES).hex()
                offset = 0
            self._offset = offset + _ID_DIGITS
            return self._block[offset : offset + _ID_DIGITS]

    def reset(self) -> None:
        """Drop the unused ids, so a forked child never repeats its parent's."""
        self._lock = threading.Lock()
        self._block = ""
        self._offset = 0


_ids = _RandomIds()
os.register_at_fork(after_in_child=_ids.reset)


def new_request_id() -> str:
    """Return an unguessable request id of 32 hex digits, unique in practice.

    Two ids collide with a probability of about n**2 / 2**129 over n ids.
    """
    return _ids.next()
