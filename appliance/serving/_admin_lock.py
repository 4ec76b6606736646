"""A bounded wait for the daemon's admin lock, for alias changes over HTTP.

A training, an ingest or a retraining holds the lock for minutes. An alias
change that waited for it unbounded was made after the client had given up
on the request, so the operator saw a timeout while the champion still moved.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from appliance.errors import JobRunningError
from appliance.serving._state import DaemonState

ALIAS_CHANGE_WAIT_SECONDS = 3.0
"""Maximum wait of a promotion or rollback for the admin lock. It is below the
request timeouts of the terminal UI (5 s) and the CLI (30 s), so they receive
the 409 response of a change that the daemon rejects for a busy lock."""


@contextlib.asynccontextmanager
async def admin_lock_within(
    state: DaemonState, model: str, action: str, seconds: float
) -> AsyncIterator[None]:
    """Hold the admin lock, or raise when it stays taken for `seconds`.

    Raises:
        JobRunningError: The lock was not free within `seconds`; nothing was
            changed. The error names the model's running retraining, if any.
    """
    try:
        await asyncio.wait_for(state.admin_lock.acquire(), seconds)
    except TimeoutError:
        raise _busy_error(state, model, action, seconds) from None
    try:
        yield
    finally:
        state.admin_lock.release()


def _busy_error(
    state: DaemonState, model: str, action: str, seconds: float
) -> JobRunningError:
    message = (
        f"{action} of model {model!r} was not made, because another admin job "
        f"(a training, an ingest or a retraining) has held the daemon for more "
        f"than {seconds:g} s; retry when it has finished"
    )
    retraining = getattr(state, "retraining", None)
    running = retraining.running(model) if retraining is not None else None
    if running is None:
        return JobRunningError(message, model=model)
    message += (
        f". Retraining {running.id} of this model runs; GET "
        f"/v1/models/{model}/retrain shows when it ends"
    )
    return JobRunningError(message, model=model, job_id=running.id)
