"""The daemon's shared objects: one `DaemonState` on ``app.state.daemon``.

The daemon builds the state while its lifespan starts (catalog, prediction log,
models, scheduler) and every route reaches it through `daemon_state`. Work
that touches the catalog from a route runs in a worker thread on its own cursor
through `run_with_catalog`, because a DuckDB connection must not be shared
between threads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from appliance.config import Config, ServerConfig
from appliance.errors import ApplianceError, NotFoundError, SignatureError
from appliance.serving._batcher import BatchSettings, MicroBatcher
from appliance.serving._metrics import ServingMetrics
from appliance.serving._onnx import OnnxModel
from appliance.signing import trusted_keys
from appliance.storage import Catalog

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from litestar import Request

    from appliance.features import FeatureServer
    from appliance.homelock import HomeLock
    from appliance.monitoring import MonitoringService
    from appliance.predictions import PredictionLog
    from appliance.retraining import RetrainService
    from appliance.serving._access import AccessControl
    from appliance.storage import IngestBuffer

logger = logging.getLogger(__name__)

T = TypeVar("T")


def cpu_count() -> int:
    """Return the number of CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def batch_settings(server: ServerConfig) -> BatchSettings:
    """Return the micro-batching settings of the `[server]` table."""
    return BatchSettings(
        enabled=server.micro_batch,
        max_rows=server.micro_batch_max_rows,
        max_wait=server.micro_batch_max_wait_ms / 1000.0,
        workers=session_threads(server),
    )


def session_threads(server: ServerConfig) -> int:
    """Return the number of threads that run onnxruntime sessions."""
    return server.session_threads or cpu_count()


def load_model(config: Config, folder: Path, sha256: str | None) -> OnnxModel:
    """Load a registered version to serve, with the keys `config` trusts.

    Blocks while the files are read and checked, so call it off the event loop.
    A signature failure also raises a critical ``signature`` alert.

    Raises:
        SignatureError: The version's signature is missing, invalid or
            untrusted, or a file differs from its signed hash.
        IntegrityError: The ONNX file differs from the catalog's sha256.
    """
    threads = session_threads(config.server)
    try:
        return OnnxModel.load(folder, sha256, threads, trusted=trusted_keys(config))
    except SignatureError as exc:
        _raise_signature_alert(config, folder, exc)
        raise


def _raise_signature_alert(config: Config, folder: Path, exc: SignatureError) -> None:
    from appliance.monitoring import AlertCandidate, raise_alerts

    model, version = folder.parent.name, folder.name
    message = f"version {version} of model {model!r} was not loaded: {exc}"
    alert = AlertCandidate(
        model, "signature", f"version {version}", "critical", message
    )
    try:
        raise_alerts(config.storage.home, [alert], config.monitoring, background=True)
    except ApplianceError:
        logger.exception(
            "signature alert not stored model=%s version=%s", model, version
        )


class ModelSet:
    """The model versions the daemon serves, by model name.

    Args:
        models: Models to serve from the start.
        executor: Thread pool for session runs; one sized by the CPUs when None.
        settings: Micro-batching settings of every model.
        on_batch: Called with the model name and rows of every session run.
    """

    def __init__(
        self,
        models: dict[str, OnnxModel] | None = None,
        executor: ThreadPoolExecutor | None = None,
        settings: BatchSettings | None = None,
        on_batch: Callable[[str, int], None] | None = None,
    ) -> None:
        self.settings = settings or BatchSettings(workers=cpu_count())
        self.executor = executor or ThreadPoolExecutor(
            self.settings.workers, thread_name_prefix="session"
        )
        self.models: dict[str, OnnxModel] = {}
        self.batchers: dict[str, MicroBatcher] = {}
        self.pinned: dict[tuple[str, int], MicroBatcher] = {}
        """Versions requested by number (``?version=N``), by name and version."""
        self.loaded = False
        """True once the startup load is done, even when no model was found."""
        self.loaded_at = time.time()
        self.on_put: Callable[[OnnxModel], None] | None = None
        """Called with every model `put` serves, such as to publish its schema."""
        self.explain_missing: Callable[[str], str | None] | None = None
        """Function that returns why a model is not served, for the 404 message."""
        self.champions: dict[str, int] = {}
        """Champion version of each model, as the catalog named it when the
        daemon last loaded or switched the model. It differs from the served
        version while a champion that failed to load is replaced."""
        self._on_batch = on_batch
        for model in (models or {}).values():
            self.put(model)

    def put(self, model: OnnxModel, champion: int | None = None) -> OnnxModel | None:
        """Serve `model` under its name from now on and return the replaced one.

        Requests already holding the old version finish on it. `champion` is
        the model's champion version when `model` replaces it, such as an
        earlier version served because the champion failed to load; by
        default `model` is the champion.
        """
        on_batch = None
        if self._on_batch is not None:
            name, callback = model.name, self._on_batch
            on_batch = lambda rows: callback(name, rows)  # noqa: E731
        batcher = MicroBatcher(model, self.executor, self.settings, on_batch)
        previous = self.models.get(model.name)
        self.models[model.name] = model
        self.batchers[model.name] = batcher
        self.champions[model.name] = model.version if champion is None else champion
        if self.on_put is not None:
            self.on_put(model)
        return previous

    def unserved_champions(self) -> dict[str, int]:
        """Return the champion version of each model that serves another
        version or none, by model name."""
        return {
            name: version
            for name, version in self.champions.items()
            if name not in self.models or self.models[name].version != version
        }

    def pin(self, model: OnnxModel) -> MicroBatcher:
        """Keep `model` loaded for requests that name its version; return its batcher.

        The served version of the model does not change.
        """
        # NOTE: a pinned version stays loaded until the daemon stops.
        batcher = MicroBatcher(model, self.executor, self.settings)
        return self.pinned.setdefault((model.name, model.version), batcher)

    def get(self, name: str) -> OnnxModel:
        """Return the served version of model `name`.

        Raises:
            NotFoundError: No model of that name is served.
        """
        return self.batcher(name).model

    def batcher(self, name: str) -> MicroBatcher:
        """Return the batcher of the served version of model `name`.

        Raises:
            NotFoundError: No model of that name is served.
        """
        try:
            return self.batchers[name]
        except KeyError:
            served = ", ".join(sorted(self.models)) or "none"
            reason = self.explain_missing(name) if self.explain_missing else None
            reason = f": {reason}" if reason else ""
            raise NotFoundError(
                f"model {name!r} is not served{reason}; served models: {served}"
            ) from None

    def configure(self, settings: BatchSettings) -> None:
        """Apply new micro-batching settings to every model."""
        self.settings = settings
        for batcher in self.batchers.values():
            batcher.settings = settings


@dataclass(eq=False)
class DaemonState:
    """Everything the routes and background jobs of the daemon share.

    The fields without a default are set by the daemon's lifespan, in this
    order, before the first request is served.
    """

    config: Config
    """The configuration in force; SIGHUP replaces it."""
    metrics: ServingMetrics
    host: str
    port: int
    home_lock: HomeLock | None = None
    """The lock on the home, whose record names the configuration in force."""
    started_at: float = field(default_factory=time.time)
    catalog: Catalog = field(init=False)
    """The daemon's connection, the only writer of the catalog while it runs."""
    predictions: PredictionLog = field(init=False)
    models: ModelSet = field(init=False)
    scheduler: AsyncIOScheduler = field(init=False)
    monitoring: MonitoringService = field(init=False)
    """Streaming drift detectors and live metrics, fed off the request path."""
    features: FeatureServer = field(init=False)
    """Fills the feature view columns of requests from their entity keys."""
    ingest: IngestBuffer = field(init=False)
    """Write-ahead buffer of the rows sent to ``POST /v1/datasets/NAME/rows``."""
    retraining: RetrainService = field(init=False)
    """Retraining jobs of the models, one at a time per model."""
    access: AccessControl = field(init=False)
    """Active API keys and the count of refused requests."""
    duckdb_threads: set[int] = field(default_factory=set)
    """Kernel ids of the worker threads DuckDB started for the catalog."""
    admin_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held while an admin command changes the catalog, one at a time."""
    ready_at: float | None = None
    """When the startup finished; None while starting."""
    start_error: Exception | None = None
    """The error that stopped the startup, logged by the daemon in one line."""
    load_failures: list[tuple[str, int, int | None, str]] = field(default_factory=list)
    """Champions that failed to load at start, as (model, version, version
    served instead or None, reason)."""
    failed_champions: dict[str, tuple[tuple[str, int, int, int], ...]] = field(
        default_factory=dict
    )
    """Files of each unserved champion whose last load retry failed, by model:
    the name, size, modification and change time of each, so that a retry
    waits until one of them changes."""


def daemon_state(request: Request[Any, Any, Any]) -> DaemonState:
    """Return the daemon state of the app serving `request`."""
    return request.app.state.daemon


def reload_features(state: DaemonState) -> None:
    """Read the feature views again, if any model joins one.

    Blocks while the views are read, so call it off the event loop. A failed
    read is logged and the views read before stay in use. A view that fails
    on its rows is shown in readiness, the metrics and an alert
    (`update_view_alerts`), and resolved there when it loads again.
    """
    from appliance.serving._view_health import update_view_alerts

    if not state.features.models:
        return
    before = dict(state.features.failures)
    try:
        state.features.load()
    except NotFoundError as exc:
        logger.warning("feature views not loaded yet: %s", exc)
    except ApplianceError:
        logger.exception("feature views reload failed; the previous views are kept")
    if before or state.features.failures:
        update_view_alerts(state, before)


async def run_with_catalog(
    state: DaemonState, function: Callable[..., T], *args: Any
) -> T:
    """Run ``function(catalog, *args)`` in a worker thread on its own cursor."""
    return await asyncio.to_thread(_with_cursor, state.catalog, function, args)


def _with_cursor(catalog: Catalog, function: Callable[..., T], args: tuple) -> T:
    view = catalog.cursor()
    try:
        return function(view, *args)
    finally:
        view.close()
