"""The actor that audit entries name: a key, the daemon or a local user.

A request's actor is its API key, set by the daemon's access gate for the
request's task with `acting_as`. `asyncio.to_thread` and new tasks copy the
context, so the route's worker threads and the jobs it starts see the same
actor. Code that runs outside any request, such as a scheduled job, gets the
process's actor: ``daemon`` in the daemon, ``local`` with the OS user in a
command that opens the catalog itself.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass

LOCAL = "local"
"""Actor name of a command run directly on the catalog."""
DAEMON = "daemon"
"""Actor name of the daemon's own jobs: rollback watch, scheduled retraining,
buffer flushes, configuration reloads."""
ANONYMOUS = "anonymous"
"""Actor name of a request without a key to a daemon that does not require one."""
RESERVED_NAMES = (LOCAL, DAEMON, ANONYMOUS)


@dataclass(frozen=True)
class Actor:
    """The key, process or user that an audit entry names."""

    name: str
    """Key name, or one of `RESERVED_NAMES`."""
    role: str | None = None
    """Role of the key; None for an actor without a key."""
    user: str | None = None
    """OS user of a `LOCAL` command."""

    @property
    def label(self) -> str:
        """Name with the key's role or the OS user, as ``ops (operator)`` or
        ``local (alice)``; the name alone for the daemon and anonymous."""
        detail = self.role or self.user
        return f"{self.name} ({detail})" if detail else self.name


_CURRENT: ContextVar[Actor | None] = ContextVar("appliance_actor", default=None)
_process_actor: Actor | None = None


def local_actor() -> Actor:
    """Return the `LOCAL` actor with the effective OS user of this process.

    The user comes from the password database, not from ``USER``, which any
    caller can set.
    """
    uid = os.geteuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = f"uid {uid}"
    return Actor(LOCAL, None, user)


def set_process_actor(actor: Actor) -> None:
    """Name `actor` in every entry recorded outside a request of this process."""
    global _process_actor
    _process_actor = actor


def current_actor() -> Actor:
    """Return the actor of the running request, else the process's actor."""
    actor = _CURRENT.get()
    if actor is not None:
        return actor
    if _process_actor is None:
        set_process_actor(local_actor())
    assert _process_actor is not None
    return _process_actor


def enter_actor(actor: Actor) -> Token[Actor | None]:
    """Make `actor` current in this context; `leave_actor` undoes it.

    The daemon's gate calls this pair on every request, because it costs less
    than entering `acting_as`.
    """
    return _CURRENT.set(actor)


def leave_actor(token: Token[Actor | None]) -> None:
    """Restore the actor that was current before `enter_actor`."""
    _CURRENT.reset(token)


@contextmanager
def acting_as(actor: Actor) -> Iterator[None]:
    """Make `actor` the current actor of this context until the block exits."""
    token = _CURRENT.set(actor)
    try:
        yield
    finally:
        _CURRENT.reset(token)
