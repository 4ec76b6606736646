"""The daemon: loads the served models and runs the HTTP API under uvicorn."""

from __future__ import annotations

import logging
import signal
import time

import uvicorn

from appliance.config import Config
from appliance.errors import ApplianceError
from appliance.features import FeatureServer
from appliance.serving import ModelSet, OnnxModel, create_app, ingest_handlers
from appliance.storage import Catalog, IngestBuffer, latest_models

logger = logging.getLogger(__name__)


def load_models(config: Config) -> ModelSet:
    """Load the latest version of every registered model.

    A version whose artifact fails its hash check is logged and skipped, so the
    other models are still served.
    """
    started = time.perf_counter()
    with Catalog(config.storage.home, read_only=True) as catalog:
        versions = latest_models(catalog)
    models = {}
    for version in versions:
        try:
            models[version.model] = OnnxModel.load(version.path, version.sha256)
        except Exception:
            logger.exception(
                "model load failed model=%s version=%d", version.model, version.version
            )
            continue
        logger.info("model loaded model=%s version=%d", version.model, version.version)
    logger.info(
        "models ready count=%d seconds=%.3f", len(models), time.perf_counter() - started
    )
    return ModelSet(models)


def load_features(config: Config) -> FeatureServer | None:
    """Load the feature views of the served models, or None when none joins one.

    A view that cannot be loaded is logged; the first request that needs it
    tries again and fails with the error.
    """
    features = FeatureServer(config)
    if not features.models:
        return None
    try:
        features.load()
    except ApplianceError:
        logger.exception("feature views load failed; retried on the first request")
    return features


def serve(config: Config, host: str | None = None, port: int | None = None) -> None:
    """Serve every registered model over HTTP until SIGINT or SIGTERM."""
    models = load_models(config)
    features = load_features(config)
    server = config.server
    buffer = IngestBuffer(config)
    if features is not None:
        buffer.on_flush = lambda dataset, result: features.load()
    buffer.start()
    app = create_app(
        models,
        server.max_body_bytes,
        server.max_rows,
        features,
        ingest_handlers(buffer, server.max_rows),
    )
    bind_host = host or server.host
    bind_port = server.port if port is None else port
    logger.info("daemon starting host=%s port=%d", bind_host, bind_port)
    # uvicorn shuts down on SIGTERM and then re-raises the signal to the handler
    # it found; a handler that ignores it lets the process exit with status 0.
    signal.signal(signal.SIGTERM, _ignore_signal)
    try:
        uvicorn.Server(
            uvicorn.Config(
                app,
                host=bind_host,
                port=bind_port,
                log_config=None,
                access_log=False,
                lifespan="on",
            )
        ).run()
    finally:
        buffer.stop()
    logger.info("daemon stopped")


def _ignore_signal(signum: int, frame: object) -> None:
    logger.debug("signal ignored signum=%d", signum)
