"""HTTP ingest: ``POST /v1/datasets/{name}/rows`` into the durable buffer.

A 202 response means the rows are fsynced to the buffer's write-ahead file.
They reach a new dataset version at the next flush (by size or age), and a
crash of the daemon in between loses none of them.

A request whose rows all lack a column that a feature view reads its entity
key or timestamp from is rejected with 422 before it is buffered. The flush
would reject its whole segment for that, as the file ingest rejects a file
without such a column. So is a request with a key that differs only in case
from a column of the dataset, such as ``A`` for ``a``, one with a row
without the dataset's ``partition_by`` column, and one of empty objects only
(``{}``) for a dataset that has neither a contract nor a version yet.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec

from appliance.config import Config, dataset_name_problem
from appliance.errors import LimitError, MediaTypeError, NotFoundError, RequestError
from appliance.serving._body import (
    JSON,
    check_rows,
    decode_repeated_keys,
    decode_with_python,
    is_arrow,
    read_body,
)
from appliance.serving._nesting import FLAT_ROWS, reject_deep_nesting
from appliance.serving._openapi import body_operation
from appliance.serving._params import DatasetName
from appliance.serving._routes_rejected import (
    RejectedSegmentStatus,
    rejected_segments_status,
)
from appliance.serving._state import DaemonState, daemon_state, run_with_catalog
from appliance.storage import (
    Catalog,
    KeyUse,
    case_mismatch,
    key_sources,
    latest_version,
    stored_contract,
)

logger = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode


class RowsRequest(msgspec.Struct, forbid_unknown_fields=False):
    """Rows for the next version of a dataset."""

    rows: Annotated[
        list[Any],
        msgspec.Meta(
            description="Rows as objects of column values, at most [server] "
            "max_rows of them, where null is a missing value. The flush ingests "
            "them like a file, so a row that breaks the dataset's contract is "
            "quarantined.",
            examples=[[{"x1": 0.25, "x2": -1.5, "color": "red", "label": 1}]],
            # The decoder takes any item, so that the buffer's error names the
            # row that is not an object, and an empty list gets its own error.
            extra_json_schema={"items": {"type": "object"}, "minItems": 1},
        ),
    ]


class RowsAccepted(msgspec.Struct):
    """Rows written to a dataset's buffer."""

    dataset: str
    accepted: Annotated[
        int,
        msgspec.Meta(
            description="Rows of this request written to the buffer. The flush "
            "checks them against the contract and may still quarantine some; "
            "its counts are in the buffer status."
        ),
    ]
    buffered: Annotated[
        int,
        msgspec.Meta(
            description="Rows waiting in the buffer, this request's included."
        ),
    ]


class FlushedSegment(msgspec.Struct):
    """Rows of one flushed segment of a dataset's buffer."""

    version: Annotated[
        str, msgspec.Meta(description="Version with the segment's accepted rows.")
    ]
    accepted: Annotated[
        int, msgspec.Meta(description="Rows of the segment written to the version.")
    ]
    quarantined: Annotated[
        int,
        msgspec.Meta(
            description="Rows of the segment that broke the contract, stored in "
            "the quarantine table."
        ),
    ]


class BufferStatus(msgspec.Struct):
    """A dataset's buffer and its flushes since the daemon started."""

    dataset: str
    buffered: Annotated[int, msgspec.Meta(description="Rows waiting for a flush.")]
    flushes: Annotated[int, msgspec.Meta(description="Flushes since start.")]
    rejected_segments: Annotated[
        int,
        msgspec.Meta(
            description="Segments set aside in the buffer's rejected/ folder since "
            "start, because their own rows failed the flush, such as a value "
            "DuckDB cannot convert. Their rows stay in the folder; the rows sent "
            "after them are flushed."
        ),
    ]
    last_rejection: Annotated[
        str | None,
        msgspec.Meta(
            description="Error of the latest rejected segment, naming its file."
        ),
    ]
    rejected: Annotated[
        list[RejectedSegmentStatus],
        msgspec.Meta(
            description="Segments in the buffer's rejected/ folder now, those of "
            "earlier runs included, each with the reason stored beside it. "
            "POST /v1/datasets/{name}/rejected/{segment}/retry ingests one again."
        ),
    ]
    failed_flushes: Annotated[
        int,
        msgspec.Meta(
            description="Flushes since start that failed for a reason that may "
            "pass, such as a full disk, and were retried with their rows kept."
        ),
    ]
    failures_in_a_row: Annotated[
        int,
        msgspec.Meta(
            description="Failed attempts of the flush being retried; 0 when the "
            "latest flush succeeded."
        ),
    ]
    flush_error: Annotated[
        str | None,
        msgspec.Meta(
            description="Error of the latest failed attempt while the flush is "
            "retried; null once a flush succeeds."
        ),
    ]
    flushed_rows: Annotated[
        int,
        msgspec.Meta(description="Rows that flushes wrote to versions since start."),
    ]
    quarantined_rows: Annotated[
        int,
        msgspec.Meta(
            description="Rows that flushes quarantined since start, for breaking "
            "the dataset's contract."
        ),
    ]
    last_flush: Annotated[
        FlushedSegment | None,
        msgspec.Meta(description="The latest segment a flush ingested since start."),
    ]


_decoder = msgspec.json.Decoder(RowsRequest)

KeyUses = dict[str, list[KeyUse]]
"""The feature view keys read from each column of a dataset."""

_key_uses: dict[str, tuple[Config, KeyUses]] = {}
"""`KeyUses` by dataset, with the config they were found in."""


@post(
    "/v1/datasets/{name:str}/rows",
    status_code=202,
    summary="Buffer rows for the next version of a dataset",
    description=(
        'Body: {"rows": [{column: value, ...}, ...]}. A 202 response means the '
        "rows are on disk in the write-ahead buffer; they reach a new version "
        "of the dataset, appended to the latest, at the next flush."
    ),
    operation_class=body_operation(RowsRequest, "Rows to append to the dataset."),
    responses={
        202: ResponseSpec(
            RowsAccepted, description="Rows on disk.", generate_examples=False
        )
    },
)
async def append_rows(
    name: DatasetName, request: Request[Any, Any, Any]
) -> Response[bytes]:
    """Write the rows of one request durably to the dataset's buffer."""
    state = daemon_state(request)
    server = state.config.server
    problem = dataset_name_problem(name)
    if problem is not None:
        raise RequestError(problem, dataset=name)
    if name not in state.config.datasets:
        await asyncio.to_thread(_check_exists, state, name)
    if is_arrow(request.headers.get("content-type")):
        raise MediaTypeError(
            f'rows for dataset {name!r} are sent as JSON ({{"rows": [...]}}); '
            "Arrow IPC streams are accepted by the predict route only, so "
            "write Arrow data to a Parquet file and run 'appliance ingest "
            f"{name} FILE --mode append'",
            dataset=name,
        )
    try:
        body = await read_body(request, server.max_body_bytes, name)
        subject = f"request body for dataset {name!r}"
        with reject_deep_nesting(body, subject, FLAT_ROWS, dataset=name):
            rows = _decode(body, name)
        check_rows(len(rows), server.max_rows, name)
    except LimitError as exc:
        detail = {k: v for k, v in exc.detail.items() if k != "model"}
        raise LimitError(str(exc), dataset=name, **detail) from None
    await _check_view_keys(state, name, rows)
    known = await run_with_catalog(state, _dataset_columns, state.config, name)
    _check_some_column(name, rows, known)
    _check_spellings(name, rows, known)
    _check_partition_keys(state.config, name, rows)
    buffered = await asyncio.to_thread(state.ingest.append, name, rows)
    accepted = RowsAccepted(dataset=name, accepted=len(rows), buffered=buffered)
    return Response(_encode(accepted), status_code=202, media_type=JSON)


@get(
    "/v1/datasets/{name:str}/rows",
    summary="Rows waiting in a dataset's buffer",
    responses={
        200: ResponseSpec(
            BufferStatus, description="The buffer.", generate_examples=False
        )
    },
)
async def buffer_status(
    name: DatasetName, request: Request[Any, Any, Any]
) -> Response[bytes]:
    """Return the rows buffered for the dataset and its flushes since start."""
    state = daemon_state(request)
    buffered, flushed = state.ingest.buffered(name)
    if not buffered and not flushed and name not in state.config.datasets:
        await asyncio.to_thread(_check_exists, state, name)
    rejected, rejection = state.ingest.rejections(name)
    on_disk = await asyncio.to_thread(rejected_segments_status, state, name)
    failed, in_a_row, flush_error = state.ingest.failures(name)
    flushed_rows, quarantined_rows, last = state.ingest.flushed_rows(name)
    status = BufferStatus(
        dataset=name,
        buffered=buffered,
        flushes=flushed,
        rejected_segments=rejected,
        last_rejection=rejection,
        rejected=on_disk,
        failed_flushes=failed,
        failures_in_a_row=in_a_row,
        flush_error=flush_error,
        flushed_rows=flushed_rows,
        quarantined_rows=quarantined_rows,
        last_flush=None
        if last is None
        else FlushedSegment(last.version, last.accepted, last.quarantined),
    )
    return Response(_encode(status), media_type=JSON)


def _check_exists(state: DaemonState, dataset: str) -> None:
    """Reject rows for a dataset that is neither declared nor ingested.

    A misspelt name in the path would otherwise start a new dataset.
    """
    view = state.catalog.cursor()
    try:
        found = latest_version(view, dataset, missing_ok=True)
    finally:
        view.close()
    if found is None:
        raise NotFoundError(
            f"dataset {dataset!r} is not declared in [datasets] and has no "
            f"version; check the name, or ingest a first file with 'appliance "
            f"ingest {dataset} FILE'"
        )


async def _check_view_keys(state: DaemonState, dataset: str, rows: list[Any]) -> None:
    """Reject rows that all lack a column a feature view reads a key from.

    The flush ingests a segment as a file in ``append`` mode, which rejects
    the whole segment when it lacks such a column of the dataset's contract,
    or, for a first version, such a column that is surely the dataset's.
    A request with the column in at least one row puts the column in every
    segment that its rows are flushed in.

    Raises:
        RequestError: Every row lacks such a column (HTTP 422).
    """
    config = state.config
    if not config.feature_views:
        return
    cached = _key_uses.get(dataset)
    if cached is None or cached[0] is not config:
        uses = await run_with_catalog(state, _find_key_uses, config, dataset)
        cached = _key_uses[dataset] = (config, uses)
    uses = cached[1]
    if not uses or not rows:
        return
    present: set[str] = set()
    for row in rows:
        if not isinstance(row, dict):
            return  # The buffer rejects the request, naming this row.
        present.update(row)
    absent = [column for column in uses if column not in present]
    if absent:
        await run_with_catalog(
            state, _reject_absent_keys, config, dataset, present, uses
        )


def _check_some_column(dataset: str, rows: list[Any], known: list[str]) -> None:
    """Reject rows that are all empty objects for a dataset without columns.

    A dataset without a contract and without a version gets its columns from
    the keys of its first flushed rows. The flush would reject a segment of
    ``{}`` rows only, after the 202, so such a request is rejected now. It is
    rejected even when rows with keys wait in the buffer, because the flush
    may take those in a segment of their own before this request's rows.

    Raises:
        RequestError: `known` is empty and no row has a key (HTTP 422).
    """
    if known or any(not isinstance(row, dict) or row for row in rows):
        return
    raise RequestError(
        f"dataset {dataset!r} has no columns yet, because it has no contract "
        f"in [datasets.{dataset}] and no version, and every row sent is an "
        'empty object ({}). Send rows with their values as keys, such as {"rows": '
        '[{"id": 1}]}, or declare the columns in '
        f"[datasets.{dataset}.contract.columns] to store each {{}} as a row of "
        "missing values",
        dataset=dataset,
    )


def _check_spellings(dataset: str, rows: list[Any], known: list[str]) -> None:
    """Reject a row with a key that the dataset spells otherwise in case.

    The flush would reject the whole segment, with the rows of other
    requests, because DuckDB does not tell apart ``A`` and ``a``.

    Raises:
        RequestError: A key differs only in case from `known`, the columns
            of the dataset's contract and latest version (HTTP 422).
    """
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            return  # The buffer rejects the request, naming this row.
        mismatch = case_mismatch(row, known)
        if mismatch is not None:
            key, column = mismatch
            raise RequestError(
                f"row {index} sent to dataset {dataset!r} has key {key!r}, which "
                f"differs only in case from the dataset's column {column!r}, and "
                f"the ingest does not tell them apart; send it as {column!r}",
                dataset=dataset,
                row=index,
                columns=[column, key],
            )


def _check_partition_keys(config: Config, dataset: str, rows: list[Any]) -> None:
    """Reject a row without the dataset's ``partition_by`` column.

    The flush would store such a row in the partition of missing values. When
    no row of a segment has the column, the flush would reject the whole
    segment, as the file ingest rejects a file without it. A row with null
    there is kept, as a file's empty value is.

    Raises:
        RequestError: A row lacks the column (HTTP 422).
    """
    column = config.dataset(dataset).partition_by
    if column is None:
        return
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            return  # The buffer rejects the request, naming this row.
        if column not in row:
            raise RequestError(
                f"row {index} sent to dataset {dataset!r} lacks column {column!r}, "
                f"which [datasets.{dataset}] partition_by stores the rows by; "
                "send the column in every row, null where the value is missing",
                dataset=dataset,
                row=index,
                columns=[column],
            )


def _dataset_columns(catalog: Catalog, config: Config, dataset: str) -> list[str]:
    """Return the columns of the dataset's contract and latest version."""
    contract = config.dataset(dataset).contract or stored_contract(catalog, dataset)
    latest = latest_version(catalog, dataset, missing_ok=True)
    return [*(contract.columns if contract else ()), *(latest.schema if latest else ())]


def _find_key_uses(catalog: Catalog, config: Config, dataset: str) -> KeyUses:
    return key_sources(catalog.db, list(config.feature_views.values()), dataset)


def _reject_absent_keys(
    catalog: Catalog, config: Config, dataset: str, present: set[str], uses: KeyUses
) -> None:
    """Raise for the key columns absent from the rows that the ingest checks.

    With a contract, those are the key columns in it or in the latest
    version, as the ingest checks them with `check_dropped_keys`. A dataset
    without a contract yet (no version and none declared) gets its first
    version from the flush, which checks the key columns that are surely the
    dataset's, as `check_first_keys` does.
    """
    contract = config.dataset(dataset).contract or stored_contract(catalog, dataset)
    latest = latest_version(catalog, dataset, missing_ok=True)
    if contract is None:
        # The first version is checked for the owned key columns only.
        uses = key_sources(
            catalog.db, list(config.feature_views.values()), dataset, owned_only=True
        )
        sent = {column.lower() for column in present}
        dropped = [column for column in uses if column.lower() not in sent]
    else:
        known = set(contract.columns) | set(latest.schema if latest else ())
        dropped = [
            column for column in uses if column not in present and column in known
        ]
    if not dropped:
        return
    lacks = [(column, use) for column in sorted(dropped) for use in uses[column]]
    described = ", and ".join(
        f"column {column!r}, which feature view {use.view!r} reads its "
        f"{use.role} {use.key!r} from"
        for column, use in lacks
    )
    views = sorted({use.view for _, use in lacks})
    changes = " or ".join(f"[feature_views.{view}]" for view in views)
    noun = "column" if len(dropped) == 1 else "columns"
    subject = "the view" if len(views) == 1 else "the views"
    raise RequestError(
        f"rows sent to dataset {dataset!r} lack {described}, so {subject} would "
        f"match none of them; send the {noun} in the rows (null where a value "
        f"is missing), or change {changes} in the configuration",
        dataset=dataset,
        columns=sorted(dropped),
        views=views,
    )


def _decode(body: bytes, dataset: str) -> list[Any]:
    if not body.strip():
        raise RequestError(
            f'empty request body for dataset {dataset!r}; send {{"rows": [{{...}}]}}',
            dataset=dataset,
            malformed=True,
        )
    try:
        return decode_repeated_keys(body, _decoder.decode(body).rows)
    except msgspec.DecodeError as exc:
        # NaN, Infinity and numbers beyond float64 reach the ingest, which
        # reads NaN as a missing value and quarantines infinities, as it
        # does for files.
        rows = decode_with_python(body, str(exc))
        if rows is not None:
            return decode_repeated_keys(body, rows)
        raise RequestError(
            f"malformed request body for dataset {dataset!r}: {exc}; send "
            '{"rows": [{...}, ...]}',
            dataset=dataset,
            malformed=True,
        ) from None


ROUTES = [append_rows, buffer_status]
"""The route handlers of this module, as `create_app` mounts them."""
