"""The daemon's monitoring service: streaming monitors fed off the request path.

Predictions are queued by the predict route and consumed by one worker thread,
so detectors never add latency to a request. Labels sent to the feedback route
are joined to the predictions by request id and row index, first in a bounded
index of recent requests and then through a lookup of the prediction log, and
stored through a callback (the catalog's labels table in the daemon). The
monitors' state is saved to the monitoring store every `save_seconds`, at
stop and with each stored detection, and restored at start. After a crash
or SIGKILL, the detectors therefore continue from the last save: the rows
seen after it are not fed again, and no stored detection is recorded twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from appliance.config import MonitoringConfig
from appliance.errors import RequestError, StorageError, cut, shown
from appliance.monitoring._alerts import AlertCandidate, drift_event_alerts
from appliance.monitoring._monitor import DetectorSettings, DriftEvent, StreamMonitor
from appliance.monitoring._store import MonitoringStore
from appliance.monitoring._versions import VersionMetrics
from appliance.monitoring._webhook import send_webhook
from appliance.pacing import Pacer
from appliance.storage import LabelRow

logger = logging.getLogger(__name__)

QUEUE_MAX_REQUESTS = 10_000
"""Requests waiting for the detectors above which new ones are not monitored."""
QUEUE_MAX_ROWS = 1_000_000
"""Rows waiting for the detectors above which new requests are not monitored.
A queued Arrow request keeps its whole request body in memory, because the
request table reads its columns from the body without a copy: 50 MB for
300,000 flights rows with their 21 features. A request with more rows is
still queued when the queue is empty."""
_DRAIN_SECONDS = 0.05
"""Period at which the worker feeds the queued requests to the detectors."""
_RUN_ROWS = 1024
"""Maximum rows of consecutive JSON requests taken from the queue at once."""
_UNIT_ROWS = 16
"""Rows fed to the detectors under one hold of the lock, between two ticks
of the pacer."""
STOP_SECONDS = 5.0
"""Time the worker goes on feeding queued rows to the detectors once stop is
asked. A million-row Arrow request of flights rows takes about 4.5 s of CPU
time to feed (one-off timing without the pacer's pauses). The rows left after
this time are counted and not monitored, so that a SIGTERM ends the process
promptly. The prediction log contains every row either way."""
_CONVERT_ROWS = 4096
"""Rows of an Arrow request that the worker converts to Python values at once.
The conversion holds the GIL, so converting a whole large batch at once would
stall the requests for seconds."""

Found = tuple[int, Any, Any]
"""Version, output and event time value of one logged prediction row."""

Lookup = Callable[[str, list[str]], dict[tuple[str, int], Found]]
"""Return ``{(request_id, row): (version, output, event time)}`` from the
prediction log."""

Persist = Callable[[list[LabelRow]], dict[tuple[str, int], Any]]
"""Store labels and return those stored before, by (request id, row)."""


@dataclass(frozen=True)
class ModelInfo:
    """Task, classes and inputs of a served model version."""

    name: str
    version: int
    task: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    classes: tuple[Any, ...] | None
    event_timestamp: str | None = None
    """Input column of the row's event time, stored with each label."""


class MonitoringService:
    """Streaming monitors of every served model, fed by a worker thread.

    Args:
        home: The appliance home, where the monitoring store lives.
        config: The ``[monitoring]`` settings.
        recent_rows: Predicted rows kept in memory for joining labels;
            ``[monitoring] recent_rows`` when None.
        save_seconds: Period of state saves while the daemon runs.
        queue_max_rows: Rows waiting for the detectors above which new
            requests are not monitored.
    """

    def __init__(
        self,
        home: Path,
        config: MonitoringConfig,
        recent_rows: int | None = None,
        save_seconds: float = 60.0,
        queue_max_rows: int = QUEUE_MAX_ROWS,
    ) -> None:
        self.home = home
        self.config = config
        self.settings = DetectorSettings(
            horizon=config.stream_horizon,
            cycles=config.stream_reference_cycles,
            p_value=config.stream_p_value,
            loss_cycles=config.stream_loss_reference_cycles,
            loss_allowance=config.stream_loss_allowance,
            loss_threshold=config.stream_loss_threshold,
            loss_test=config.stream_loss_test,  # type: ignore[arg-type]
            delta=config.stream_delta,
        )
        self.recent_rows = config.recent_rows if recent_rows is None else recent_rows
        self.save_seconds = save_seconds
        self._monitors: dict[str, tuple[int, StreamMonitor]] = {}
        self._versions = VersionMetrics(self.settings.metrics_window)
        self._recent: OrderedDict[
            str, tuple[str, int, Sequence[Any], Sequence[Any]]
        ] = OrderedDict()
        self._recent_count = 0
        self._lock = threading.Lock()
        self._record_lock = threading.Lock()
        """Held while detections and their state are stored."""
        # A deque without a wake-up: the worker drains it every
        # _DRAIN_SECONDS, so a request does not wake the worker thread.
        self._queue: deque[tuple[ModelInfo, Any, Any]] = deque()
        """Requests waiting for the detectors: model, rows and per-row outputs,
        either lists (JSON requests) or an Arrow table and a NumPy array."""
        self.queue_max_rows = queue_max_rows
        self._queued_rows = 0
        self._queue_lock = threading.Lock()
        """Held while a request joins or leaves `_queue` and `_queued_rows`."""
        self._stopping = threading.Event()
        self._stop_by = float("inf")
        self._thread: threading.Thread | None = None
        self._pacer = Pacer()
        self.dropped = 0
        """Requests not monitored because the queue was full."""
        self.observed = 0
        """Predicted rows fed to the detectors since start."""
        self.skipped_at_stop = 0
        """Queued rows left unmonitored because stop's time ran out."""
        self.on_drift: Callable[[str], None] | None = None
        """Called with the model name from the worker thread after streaming
        detections of the model were recorded, such as to start a retraining."""

    @property
    def thread_id(self) -> int | None:
        """Kernel id of the worker thread while it runs, else None."""
        thread = self._thread
        return thread.native_id if thread is not None and thread.is_alive() else None

    def start(self) -> None:
        """Restore the saved monitors and start the worker thread."""
        self._restore_all()
        self._thread = threading.Thread(
            target=self._run, name="monitoring", daemon=True
        )
        self._thread.start()
        logger.info(
            "monitoring started home=%s streaming=%s thread_id=%d",
            self.home,
            self.config.streaming,
            self._thread.native_id,
        )

    def stop(self) -> None:
        """Process the queued predictions, stop the worker and save the state."""
        if self._thread is not None:
            self._stop_by = time.monotonic() + STOP_SECONDS
            self._stopping.set()
            self._thread.join(timeout=STOP_SECONDS + 30)
            if self._thread.is_alive():
                logger.error(
                    "monitoring stop timed out thread_id=%s; state not saved",
                    self._thread.native_id,
                )
                return
            self._thread = None
        self.save()
        logger.info(
            "monitoring stopped dropped=%d skipped_at_stop=%d",
            self.dropped,
            self.skipped_at_stop,
        )

    def submit(self, info: ModelInfo, request_id: str, rows: Any, outputs: Any) -> None:
        """Remember one request's outputs for labels and queue its rows.

        The outputs and event times are in the recent rows when this returns,
        so a label sent after the response joins them. An Arrow request's
        outputs and event times stay arrays, converted only for the rows
        that labels name, and the monitoring worker converts its rows for
        the detectors. When the queue is full, in requests or in rows, the
        request is counted in `dropped` and skipped by the detectors, but
        the prediction log still records it.
        """
        if isinstance(outputs, list):
            results: Sequence[Any] = [output_values(info, o) for o in outputs]
            times: Sequence[Any] = _event_times(info, rows, len(results))
        else:
            array = _output_array(info, outputs)
            results = _ArrayRows(array)
            times = _arrow_event_times(info, rows, len(array))
        with self._lock:
            self._remember(request_id, info, results, times)
        if self.config.streaming:
            queued = results if isinstance(outputs, list) else array
            self._enqueue((info, rows, queued))

    def _enqueue(self, item: tuple[ModelInfo, Any, Any]) -> None:
        rows = len(item[2])
        with self._queue_lock:
            full = len(self._queue) >= QUEUE_MAX_REQUESTS or (
                self._queue and self._queued_rows + rows > self.queue_max_rows
            )
            if not full:
                self._queue.append(item)
                self._queued_rows += rows
                return
            self.dropped += 1
            dropped = self.dropped
        if dropped % 1000 == 1:
            logger.warning(
                "monitoring queue full dropped=%d queued_rows=%d rows=%d",
                dropped,
                self._queued_rows,
                rows,
            )

    def _dequeue(self) -> tuple[ModelInfo, Any, Any]:
        with self._queue_lock:
            item = self._queue.popleft()
            self._queued_rows -= len(item[2])
        return item

    @property
    def queued(self) -> int:
        """Requests waiting for the detectors."""
        return len(self._queue)

    def cpu_seconds(self) -> float:
        """Return the CPU time of the worker thread (user and system), in seconds.

        Returns 0.0 before `start` and after `stop`.
        """
        thread = self._thread
        if thread is None or thread.ident is None:
            return 0.0
        try:
            clock = time.pthread_getcpuclockid(thread.ident)
            return time.clock_gettime(clock)
        except (AttributeError, OSError):
            # NOTE: pthread_getcpuclockid exists on Unix only, and the thread
            # may end between the check above and the call.
            return 0.0

    def apply_labels(
        self,
        info: ModelInfo,
        labels: list[dict[str, Any]],
        lookup: Lookup | None,
        persist: Persist | None = None,
    ) -> dict[str, Any]:
        """Join labels to predictions, store them, and feed the detectors.

        Every label is checked before any is stored, so a batch with an
        unknown request id or an invalid label changes nothing. A label whose
        (request id, row) was stored before, or that repeats one earlier in
        the batch, is not stored or fed again; the response lists it under
        ``repeated`` with the value kept.

        Raises:
            RequestError: A label names an unknown request id or row, or a
                value that is not a class of the model.
            StorageError: `persist` failed; nothing was stored or fed.
        """
        keys = [_label_key(info, i, item) for i, item in enumerate(labels)]
        found = self._find(info, keys, lookup)
        missing = [k for k in keys if k not in found]
        if missing:
            listed = ", ".join(f"{cut(rid)} row {row}" for rid, row in missing[:5])
            raise RequestError(
                f"{len(missing)} of {len(keys)} labels for model {info.name!r} match "
                f"no logged prediction ({listed}); check the request_id and row "
                "values. No label of this request was stored",
                model=info.name,
                unknown=[{"request_id": r, "row": i} for r, i in missing],
            )
        targets = [_target(info, i, item) for i, item in enumerate(labels)]
        fresh, kept = _first_of_each(keys, labels)
        rows = [_label_row(info, keys[i], labels[i], found[keys[i]]) for i in fresh]
        stored = persist(rows) if persist is not None else {}
        kept.update(stored)
        events: list[DriftEvent] = []
        with self._lock:
            for i in fresh:
                if keys[i] in stored:
                    continue
                version, output, _ = found[keys[i]]
                self._versions.update(info.name, version, info.task, targets[i], output)
                if version != info.version:
                    # A label for an earlier version's prediction scores that
                    # version only; it must not reset the served version's
                    # detectors or feed its loss detector.
                    continue
                monitor = self._monitor(info, version)
                events += monitor.observe_label(targets[i], output)
        if events:
            self._record(info.name, events)
        first = set(fresh)
        repeated = [
            {"request_id": rid, "row": row, "label": kept[(rid, row)]}
            for index, (rid, row) in enumerate(keys)
            if index not in first or (rid, row) in stored
        ]
        return {
            "model": info.name,
            "labels": len(labels),
            "stored": len(labels) - len(repeated),
            "repeated": repeated,
            "events": len(events),
        }

    def status(self, name: str) -> dict[str, Any]:
        """Return the streaming state of one model as JSON-ready values."""
        with self._lock:
            entry = self._monitors.get(name)
            if entry is None:
                return {"model": name, "version": None, "rows": 0, "labels": 0}
            version, monitor = entry
            return {
                "model": name,
                "version": version,
                "rows": monitor.rows,
                "labels": monitor.labels,
                "live": monitor.live.metrics(),
            }

    def version_metrics(
        self, name: str, version: int, min_auc_labels: int = 200
    ) -> dict[str, float | int | None] | None:
        """Return the live metrics of one version of a model, or None unlabelled."""
        with self._lock:
            return self._versions.metrics(name, version, min_auc_labels)

    def save(self) -> None:
        """Write every monitor's state and the windows per version to the store."""
        with self._record_lock:
            self._save()

    def _save(self) -> None:
        with self._lock:
            states = [(n, v, m.to_bytes()) for n, (v, m) in self._monitors.items()]
            versions = self._versions.to_bytes()
        if not states:
            return
        try:
            with MonitoringStore(self.home) as store:
                for name, version, state in states:
                    store.save_state(name, version, state)
                store.save_version_metrics(versions)
        except StorageError:
            logger.exception("monitoring state not saved models=%d", len(states))

    def _monitor(self, info: ModelInfo, version: int) -> StreamMonitor:
        entry = self._monitors.get(info.name)
        if entry is not None and entry[0] == version:
            return entry[1]
        monitor = StreamMonitor(
            info.task, info.numeric, info.categorical, self.settings
        )
        self._monitors[info.name] = (version, monitor)
        return monitor

    def _restore_all(self) -> None:
        try:
            with MonitoringStore(self.home) as store:
                saved = store.load_states()
                versions = store.load_version_metrics()
            if versions is not None:
                self._versions = VersionMetrics.from_bytes(versions)
        except StorageError as exc:
            # The message names the file and the next step; no traceback.
            logger.error(
                "monitoring state not restored; detectors start fresh error=%s", exc
            )
            return
        for name, version, state in saved:
            try:
                self._monitors[name] = (version, StreamMonitor.from_bytes(state))
            except StorageError as exc:
                # A state saved by another release of the detectors is expected
                # after an upgrade: the model's detectors start fresh.
                logger.warning(
                    "monitoring state not restored model=%s version=%d "
                    "reason=%r; its detectors start fresh",
                    name,
                    version,
                    str(exc),
                )
        for name, (version, monitor) in self._monitors.items():
            logger.info(
                "monitoring state restored model=%s version=%d rows=%d labels=%d",
                name,
                version,
                monitor.rows,
                monitor.labels,
            )

    def _run(self) -> None:
        saved_at = time.monotonic()
        while True:
            stopping = self._stopping.wait(_DRAIN_SECONDS)
            while self._queue and not self._out_of_time():
                self._observe(*self._take_run())
            if stopping:
                while self._queue:
                    self.skipped_at_stop += len(self._dequeue()[2])
                return
            if time.monotonic() - saved_at >= self.save_seconds:
                self.save()
                saved_at = time.monotonic()

    def _out_of_time(self) -> bool:
        return self._stopping.is_set() and time.monotonic() > self._stop_by

    def _take_run(self) -> tuple[ModelInfo, Any, Any]:
        """Pop the next queued request, joined with the JSON requests of the
        same model version queued right after it, up to about `_RUN_ROWS` rows.

        An Arrow request is taken alone.
        """
        info, rows, outputs = self._dequeue()
        if not isinstance(rows, list):
            return info, rows, outputs
        rows, outputs = list(rows), list(outputs)
        queue = self._queue
        while queue and len(rows) < _RUN_ROWS:
            following = queue[0]
            if following[0] is not info or not isinstance(following[1], list):
                break
            self._dequeue()
            rows += following[1]
            outputs += following[2]
        return info, rows, outputs

    def _observe(self, info: ModelInfo, rows: Any, outputs: Any) -> None:
        try:
            if isinstance(rows, list):
                events = self._observe_rows(info, rows, outputs)
            else:
                events = self._observe_table(info, rows, outputs)
        except Exception:
            logger.exception("monitoring update failed model=%s", info.name)
            return
        if events:
            self._record(info.name, events)

    def _observe_rows(
        self, info: ModelInfo, rows: list[Any], outputs: list[Any]
    ) -> list[DriftEvent]:
        pairs = zip(rows, outputs, strict=True)
        fed = [(r, o) for r, o in pairs if isinstance(r, dict)]
        events: list[DriftEvent] = []
        for start in range(0, len(fed), _UNIT_ROWS):
            if self._out_of_time():
                self.skipped_at_stop += len(fed) - start
                break
            part = fed[start : start + _UNIT_ROWS]
            with self._lock:
                monitor = self._monitor(info, info.version)
                events += monitor.observe_predictions(
                    [r for r, _ in part], [o for _, o in part]
                )
                self.observed += len(part)
            # Requests take the lock to remember their rows, so it is
            # free during the pause.
            self._pacer.tick()
        return events

    def _observe_table(
        self, info: ModelInfo, table: pa.Table, outputs: np.ndarray
    ) -> list[DriftEvent]:
        """Feed every row of an Arrow request, converting only the monitored
        columns, a slice at a time."""
        names = [
            n for n in (*info.numeric, *info.categorical) if n in table.schema.names
        ]
        scores = outputs if outputs.ndim == 1 else outputs[:, -1]
        events: list[DriftEvent] = []
        for start in range(0, table.num_rows, _CONVERT_ROWS):
            columns = {
                name: table.column(name).slice(start, _CONVERT_ROWS).to_pylist()
                for name in names
            }
            part_scores = scores[start : start + _CONVERT_ROWS].tolist()
            for offset in range(0, len(part_scores), _UNIT_ROWS):
                if self._out_of_time():
                    self.skipped_at_stop += table.num_rows - start - offset
                    return events
                unit = slice(offset, offset + _UNIT_ROWS)
                with self._lock:
                    monitor = self._monitor(info, info.version)
                    events += monitor.observe_columns(
                        {name: values[unit] for name, values in columns.items()},
                        part_scores[unit],
                    )
                    self.observed += len(part_scores[unit])
                self._pacer.tick()
        return events

    def _record(self, model: str, events: list[DriftEvent]) -> None:
        # The lock orders this save and `save`, which the worker thread and
        # the labels path call, so an earlier state never overwrites a later.
        with self._record_lock:
            self._store_events(model, events)
        if self.on_drift is not None:
            try:
                self.on_drift(model)
            except Exception:
                logger.exception("drift alarm handler failed model=%s", model)

    def _store_events(self, model: str, events: list[DriftEvent]) -> None:
        """Store detections with the state that made them, and open alerts."""
        with self._lock:
            entry = self._monitors.get(model)
            state = None if entry is None else (entry[0], entry[1].to_bytes())
        try:
            with MonitoringStore(self.home) as store:
                if state is None:
                    store.record_events(model, events)
                else:
                    store.record_detections(model, *state, events)
                for candidate, count in _by_key(drift_event_alerts(model, events)):
                    alert, new = store.record_alert(candidate, occurrences=count)
                    if new:
                        logger.warning(
                            "alert opened id=%d model=%s kind=%s subject=%s",
                            alert.id,
                            model,
                            alert.kind,
                            alert.subject,
                        )
                        self._notify(alert.to_dict())
        except StorageError:
            logger.exception("drift events not stored model=%s", model)

    def _notify(self, payload: dict[str, Any]) -> None:
        """Post a new alert to the webhook in a thread of its own, if one is set."""
        config = self.config
        if not config.webhook_url:
            return
        threading.Thread(
            target=send_webhook,
            args=(
                config.webhook_url,
                payload,
                config.webhook_retries,
                config.webhook_backoff_seconds,
                config.webhook_timeout_seconds,
            ),
            name="webhook",
            daemon=True,
        ).start()

    def _remember(
        self,
        request_id: str,
        info: ModelInfo,
        outputs: Sequence[Any],
        times: Sequence[Any],
    ) -> None:
        if isinstance(outputs, list):
            # Tuples of floats, unlike lists, drop out of the garbage
            # collector's tracking, so the recent rows do not lengthen its
            # full collections.
            outputs = tuple(tuple(o) if isinstance(o, list) else o for o in outputs)
            times = tuple(times)
        self._recent[request_id] = (info.name, info.version, outputs, times)
        self._recent_count += len(outputs)
        # The newest request stays even when it alone has more than
        # recent_rows rows, such as a large Arrow batch, so that labels sent
        # right after its response join it.
        # A request evicted here before the prediction log writer inserted it
        # is found among the writer's unwritten entries.
        while self._recent_count > self.recent_rows and len(self._recent) > 1:
            _, (_, _, old, _) = self._recent.popitem(last=False)
            self._recent_count -= len(old)

    def _find(
        self, info: ModelInfo, keys: list[tuple[str, int]], lookup: Lookup | None
    ) -> dict[tuple[str, int], Found]:
        found: dict[tuple[str, int], Found] = {}
        with self._lock:
            for request_id, row in keys:
                entry = self._recent.get(request_id)
                if entry and entry[0] == info.name and 0 <= row < len(entry[2]):
                    found[(request_id, row)] = (entry[1], entry[2][row], entry[3][row])
        rest = sorted({rid for rid, row in keys if (rid, row) not in found})
        if rest and lookup is not None:
            found.update(lookup(info.name, rest))
        return found


def _first_of_each(
    keys: list[tuple[str, int]], labels: list[dict[str, Any]]
) -> tuple[list[int], dict[tuple[str, int], Any]]:
    """Return the positions of the first label of each key, and their values."""
    first: dict[tuple[str, int], int] = {}
    for index, key in enumerate(keys):
        first.setdefault(key, index)
    kept = {key: labels[index]["label"] for key, index in first.items()}
    return sorted(first.values()), kept


def _label_row(
    info: ModelInfo, key: tuple[str, int], item: dict[str, Any], found: Found
) -> LabelRow:
    version, _, event_time = found
    return LabelRow(
        model=info.name,
        version=version,
        request_id=key[0],
        row_index=key[1],
        label=item["label"],
        received_at=datetime.now(UTC),
        event_time=parse_event_time(event_time),
    )


def parse_event_time(value: Any) -> datetime | None:
    """Convert a request's event time value to an aware UTC datetime, or None.

    A time without a zone is read as UTC, as the training frame reads it.
    """
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _event_times(info: ModelInfo, rows: list[Any], count: int) -> list[Any]:
    """Return the event time value of each JSON row."""
    column = info.event_timestamp
    if column is None:
        return [None] * count
    return [row.get(column) if isinstance(row, dict) else None for row in rows]


def _arrow_event_times(info: ModelInfo, table: pa.Table, count: int) -> Sequence[Any]:
    """Return the event time column of an Arrow request, or None for each row."""
    column = info.event_timestamp
    if column is None or column not in table.schema.names:
        return [None] * count
    return _ArrowValues(table.column(column).combine_chunks())


def _output_array(info: ModelInfo, outputs: pa.Table) -> np.ndarray:
    """Return the outputs of an Arrow response as float64: the value of each
    row (regression) or its probabilities in class order."""
    if info.task == "regression":
        return outputs.column("prediction").to_numpy().astype(np.float64)
    keys = [f"probability_{_class_key(c)}" for c in info.classes or ()]
    columns = [outputs.column(k).to_numpy().astype(np.float64) for k in keys]
    return np.column_stack(columns)


class _ArrayRows(Sequence[Any]):
    """Outputs of an Arrow request as a sequence of per-row Python values.

    A row is converted when a label reads it, so remembering a large batch
    converts nothing.
    """

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, index: Any) -> Any:
        return self.array[index].tolist()


class _ArrowValues(Sequence[Any]):
    """An Arrow array read as Python values one row at a time."""

    def __init__(self, array: pa.Array) -> None:
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, index: Any) -> Any:
        return self.array[index].as_py()


def output_values(info: ModelInfo, output: dict[str, Any]) -> Any:
    """Return one logged output as a probability list in class order, or a value.

    Reads ``{"label", "probabilities": {class: p}}`` or ``{"value"}``, the
    shape of every output the log stores, and the row of an Arrow response,
    ``{"prediction", "probability_<class>", ...}`` or ``{"prediction"}``,
    which earlier daemons stored for Arrow requests.
    """
    keys = [_class_key(c) for c in info.classes or ()]
    if info.task == "regression":
        return output["value"] if "value" in output else output["prediction"]
    if "probabilities" in output:
        probabilities = output["probabilities"]
        return [probabilities[k] for k in keys]
    return [output[f"probability_{k}"] for k in keys]


def label_target(info: ModelInfo, label: Any) -> float:
    """Return a stored label as the live metrics take it: a class index or value.

    Raises:
        RequestError: `label` is not a class of the model, or not a number
            for a regression.
    """
    return _target(info, 0, {"label": label})


def _label_key(info: ModelInfo, index: int, item: Any) -> tuple[str, int]:
    if not isinstance(item, dict):
        raise RequestError(
            f"label {index} for model {info.name!r} is not an object; send "
            '{"request_id": ..., "row": 0, "label": ...}',
            model=info.name,
        )
    request_id, row = item.get("request_id"), item.get("row")
    if "row" not in item:
        # Rejected rather than read as 0, because in a request of several rows
        # row 0 would be the wrong prediction.
        raise RequestError(
            f"label {index} for model {info.name!r} (request_id "
            f"{shown(request_id)}) has no 'row'; send the index of the predicted "
            "row in its request, from 0",
            model=info.name,
        )
    valid_row = isinstance(row, int) and not isinstance(row, bool) and row >= 0
    if not isinstance(request_id, str) or not valid_row:
        raise RequestError(
            f"label {index} for model {info.name!r} needs a string request_id and "
            f"a row index of at least 0, got {shown(request_id)} and {shown(row)}",
            model=info.name,
        )
    if "label" not in item:
        raise RequestError(
            f"label {index} for model {info.name!r} has no 'label' value",
            model=info.name,
        )
    return request_id, row


def _target(info: ModelInfo, index: int, item: dict[str, Any]) -> float:
    value = item["label"]
    written = _json_shown(value)
    if info.task == "regression":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RequestError(
                f"label {written} for regression model {info.name!r} is not "
                f"a number (label {index} of the request)",
                model=info.name,
            )
        return float(value)
    keys = [_class_key(c) for c in info.classes or ()]
    if keys == ["false", "true"] and type(value) is int and value in (0, 1):
        # JSON clients often send a boolean as 0 or 1.
        value = bool(value)
    if _class_key(value) not in keys:
        raise RequestError(
            f"label {written} is not a class of model {info.name!r} (label {index} "
            f"of the request); classes: {', '.join(keys)}",
            model=info.name,
        )
    return float(keys.index(_class_key(value)))


def _json_shown(value: Any) -> str:
    """Return `value` for a message, with null, true and false as JSON writes them."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return shown(value)


def _class_key(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _by_key(candidates: list[AlertCandidate]) -> list[tuple[AlertCandidate, int]]:
    """Return the last candidate of each alert key with the number of candidates.

    A large request can yield thousands of detections of a few alerts; each
    alert is then written once rather than once per detection.
    """
    last: dict[tuple[str, str, str], AlertCandidate] = {}
    counts: dict[tuple[str, str, str], int] = {}
    for candidate in candidates:
        last[candidate.key] = candidate
        counts[candidate.key] = counts.get(candidate.key, 0) + 1
    return [(candidate, counts[key]) for key, candidate in last.items()]
