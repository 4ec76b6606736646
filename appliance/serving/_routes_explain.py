"""The explain route: each input feature's contribution to a row's prediction.

Explanations are not predictions: they are not logged, monitored or counted
in the prediction metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, post
from litestar.params import QueryParameter

from appliance.errors import LimitError, RequestError
from appliance.features import FeatureServer
from appliance.serving._body import JSON, decode_json_rows, read_body
from appliance.serving._explain import (
    METHOD,
    METHOD_DESCRIPTION,
    explain_feed,
    reference_of,
)
from appliance.serving._lookup_checks import check_lookup_rows
from appliance.serving._nesting import FLAT_ROWS, reject_deep_nesting
from appliance.serving._onnx import OnnxModel
from appliance.serving._openapi import body_operation
from appliance.serving._params import ModelName
from appliance.serving._routes_predict import fill_rows
from appliance.serving._routes_registry import pinned_batcher
from appliance.serving._state import daemon_state

logger = logging.getLogger(__name__)

EXPLAIN_MAX_ROWS = 100
"""Maximum rows of one explain request. Each row costs one session run per
input feature plus one, so 100 rows of a model of 30 inputs run as many rows
as a 3,100-row prediction."""

_encode = msgspec.json.Encoder().encode


class ExplainRequest(msgspec.Struct):
    """Rows to explain, as a prediction request sends them."""

    rows: Annotated[
        list[Any],
        msgspec.Meta(
            description=f"Rows as objects of column values, at most "
            f"{EXPLAIN_MAX_ROWS} (and at most [server] max_rows); feature view "
            "columns a row lacks are filled from its entity keys.",
            extra_json_schema={"items": {"type": "object"}, "minItems": 1},
        ),
    ]


@post(
    "/v1/models/{name:str}/explain",
    status_code=200,
    summary="Explain predictions: each input feature's contribution",
    description=(
        'JSON {"rows": [...]} as for predict returns {"model", "version", '
        '"method", "method_description", "reference", "explanations"}; each '
        "explanation holds the prediction, the explained value (a probability "
        "or the value), the baseline and a contribution per input feature. "
        f"{METHOD_DESCRIPTION}"
    ),
    operation_class=body_operation(ExplainRequest, "Rows to explain."),
)
async def explain(
    name: ModelName,
    request: Request[Any, Any, Any],
    version: Annotated[
        int | None,
        QueryParameter(
            description="Registered version whose predictions are explained. "
            "The served version's are when absent."
        ),
    ] = None,
) -> Response[bytes]:
    """Explain the predictions of the rows of one request, by the served
    version or the registered `version`."""
    started = time.perf_counter()
    state = daemon_state(request)
    model = state.models.get(name)
    if version is not None and version != model.version:
        model = (await pinned_batcher(state, name, version)).model
    reference = reference_of(model)
    body = await read_body(request, state.config.server.max_body_bytes, name)
    with reject_deep_nesting(body, f"request body for model {name!r}", FLAT_ROWS):
        rows = decode_json_rows(body, name)
    check_count(model, len(rows), min(EXPLAIN_MAX_ROWS, state.config.server.max_rows))
    feed, warnings = await asyncio.to_thread(feed_rows, state.features, model, rows)
    loop = asyncio.get_running_loop()
    explanations = await loop.run_in_executor(
        state.models.executor, explain_feed, model, feed, reference
    )
    result = explain_response(model, reference, explanations, warnings)
    logger.info(
        "predictions explained model=%s version=%d rows=%d seconds=%.3f",
        model.name,
        model.version,
        len(rows),
        time.perf_counter() - started,
    )
    return Response(_encode(result), media_type=JSON)


def explain_response(
    model: OnnxModel,
    reference: dict[str, Any],
    explanations: list[dict[str, Any]],
    warnings: list[str],
) -> dict[str, Any]:
    """Return the JSON body of an explain request."""
    result: dict[str, Any] = {
        "model": model.name,
        "version": model.version,
        "method": METHOD,
        "method_description": METHOD_DESCRIPTION,
        "reference": {spec["name"]: reference[spec["name"]] for spec in model.inputs},
        "explanations": explanations,
    }
    if warnings:
        result["warnings"] = warnings
    return result


def check_count(model: OnnxModel, rows: int, limit: int) -> None:
    """Reject a request to explain no rows (422) or more than `limit` (413)."""
    if not rows:
        raise RequestError(
            f"the request to explain model {model.name!r} has no rows; send "
            '{"rows": [{...}, ...]} with at least one row',
            model=model.name,
        )
    if rows > limit:
        raise LimitError(
            f"request has {rows} rows, above the limit of {limit} rows of one "
            "explain request; split it into smaller requests",
            model=model.name,
            limit=limit,
        )


def feed_rows(
    features: FeatureServer | None, model: OnnxModel, rows: list[Any]
) -> tuple[dict[str, Any], list[str]]:
    """Fill feature view columns and return the ONNX feed and its warnings.

    Raises:
        RequestError: A row lacks an entity key or does not fit the model.
    """
    misses: list[str] = []
    fed = rows
    if features is not None and features.uses_features(model.name):
        check_lookup_rows(features, model.name, rows)
        _, fed, misses = fill_rows(features, model, rows)
    feed, warnings = model.feed_rows(fed)
    return feed, [*warnings, *misses]


ROUTES = [explain]
"""The route handlers of this module, as `create_app` mounts them."""
