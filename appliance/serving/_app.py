"""The HTTP API: Litestar routes that predict with ONNX sessions."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.exceptions import HTTPException

from appliance.errors import ApplianceError, NotFoundError, RequestError
from appliance.features import FeatureServer
from appliance.serving._onnx import OnnxModel

logger = logging.getLogger(__name__)

_JSON = "application/json"
_STATUS = {NotFoundError: 404, RequestError: 422}


class PredictRequest(msgspec.Struct, forbid_unknown_fields=False):
    """Body of a prediction request."""

    rows: list[Any]


class ModelSet:
    """The model versions the daemon serves, by model name."""

    def __init__(self, models: dict[str, OnnxModel]) -> None:
        self.models = models
        self.loaded_at = time.time()

    def get(self, name: str) -> OnnxModel:
        """Return the served version of model `name`.

        Raises:
            NotFoundError: No model of that name is served.
        """
        try:
            return self.models[name]
        except KeyError:
            served = ", ".join(sorted(self.models)) or "none"
            raise NotFoundError(
                f"model {name!r} is not served; served models: {served}"
            ) from None


def create_app(
    models: ModelSet,
    max_body_bytes: int,
    max_rows: int,
    features: FeatureServer | None = None,
    extra_handlers: Sequence[Any] = (),
) -> Litestar:
    """Build the Litestar application serving `models`.

    Args:
        models: Served model versions.
        max_body_bytes: Largest request body accepted.
        max_rows: Most rows in one prediction request.
        features: Fills the feature view columns of models that join views.
        extra_handlers: More route handlers, such as the dataset ingest routes.
    """
    decoder = msgspec.json.Decoder(PredictRequest)
    encoder = msgspec.json.Encoder()

    def respond(content: Any, status: int = 200) -> Response[bytes]:
        return Response(encoder.encode(content), status_code=status, media_type=_JSON)

    @get("/health")
    async def health() -> Response[bytes]:
        return respond({"status": "ok", "models": len(models.models)})

    @get("/v1/models")
    async def list_models() -> Response[bytes]:
        return respond(
            {
                "models": [
                    {
                        "name": name,
                        "version": model.version,
                        "task": model.task,
                        "inputs": model.inputs,
                        "classes": model.classes,
                    }
                    for name, model in sorted(models.models.items())
                ]
            }
        )

    @post("/v1/models/{name:str}/predict", status_code=200)
    async def predict(name: str, request: Request[Any, Any, Any]) -> Response[bytes]:
        request_id = uuid.uuid4().hex
        model = models.get(name)
        rows = _decode(decoder, await request.body(), name)
        if len(rows) > max_rows:
            return respond(
                {
                    "error": f"request has {len(rows)} rows, above the limit of "
                    f"{max_rows}; split it into smaller requests",
                    "model": name,
                    "limit": max_rows,
                },
                status=413,
            )
        started = time.perf_counter()
        if features is not None and features.uses_features(name):
            rows = await asyncio.to_thread(features.fill, name, rows)
        predictions = await asyncio.to_thread(model.predict_rows, rows)
        logger.debug(
            "predicted model=%s version=%d rows=%d request=%s seconds=%.4f",
            name,
            model.version,
            len(rows),
            request_id,
            time.perf_counter() - started,
        )
        return respond(
            {
                "model": name,
                "version": model.version,
                "request_id": request_id,
                "predictions": predictions,
            }
        )

    def on_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
        if isinstance(exc, HTTPException):
            return respond({"error": exc.detail}, status=exc.status_code)
        if isinstance(exc, ApplianceError):
            status = _STATUS.get(type(exc), 400)
            if isinstance(exc, RequestError) and exc.detail.get("malformed"):
                status = 400
            detail = getattr(exc, "detail", {})
            logger.warning(
                "request rejected path=%s status=%d error=%s",
                request.url.path,
                status,
                exc,
            )
            body = {
                "error": str(exc),
                **{k: v for k, v in detail.items() if k != "malformed"},
            }
            return respond(body, status=status)
        logger.exception("request failed path=%s", request.url.path)
        return respond({"error": "internal error; see the daemon log"}, status=500)

    return Litestar(
        route_handlers=[health, list_models, predict, *extra_handlers],
        exception_handlers={Exception: on_error},
        request_max_body_size=max_body_bytes,
        logging_config=None,
    )


def _decode(decoder: msgspec.json.Decoder, body: bytes, model: str) -> list[Any]:
    if not body.strip():
        raise RequestError(
            f'empty request body for model {model!r}; send {{"rows": [{{...}}]}}',
            model=model,
            malformed=True,
        )
    try:
        return decoder.decode(body).rows
    except msgspec.DecodeError as exc:
        raise RequestError(
            f"malformed request body for model {model!r}: {exc}; send "
            '{"rows": [{...}, ...]}',
            model=model,
            malformed=True,
        ) from None
