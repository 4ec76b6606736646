"""``appliance datasets rejected NAME [--retry SEGMENT]``: rejected buffer segments.

A flush of rows sent over HTTP sets a segment aside in
``HOME/buffer/NAME/rejected/`` when its own rows fail, with a reason file
beside it. The command lists those segments with their reasons, and
``--retry`` ingests one again as an append once the cause is fixed. While a
daemon runs, both go through its HTTP API, because the daemon has the
catalog open and flushes the buffer. Without a daemon, the command reads the
folder and ingests the segment itself.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any
from urllib.parse import quote

from appliance.cli._output import add_command, add_json_flag
from appliance.cli._urls import dataset_segment
from appliance.config import Config
from appliance.errors import DaemonError


def register_rejected(datasets: Any) -> None:
    """Add ``datasets rejected`` to the ``datasets`` group."""
    rejected = add_command(
        datasets,
        "rejected",
        _rejected,
        "list buffer segments whose flush failed on their rows, or retry one",
    )
    rejected.add_argument("dataset")
    rejected.add_argument(
        "--retry",
        metavar="SEGMENT",
        help="ingest this segment again as an append, after fixing the rows or "
        "the contract; it leaves rejected/ once its version is committed",
    )
    add_json_flag(rejected)


def _rejected(config: Config, args: argparse.Namespace) -> int:
    # The name is a buffer folder and a URL path segment, so it is checked
    # before either is used.
    dataset_segment(args.dataset)
    if args.retry is not None:
        return _retry(config, args.dataset, args.retry, args.json)
    segments = _list(config, args.dataset)
    if not segments:
        from appliance.cli._names import check_dataset_known

        check_dataset_known(config, args.dataset)
    if args.json:
        for segment in segments:
            print(json.dumps(segment))
        return 0
    _print_segments(args.dataset, segments)
    return 0


def _list(config: Config, dataset: str) -> list[dict[str, Any]]:
    """Return the rejected segments of `dataset`, from the daemon when it runs."""
    from appliance.client import find_daemon

    client = find_daemon(config.storage.home, config.path, config.api_key)
    if client is not None:
        path = f"/v1/datasets/{dataset_segment(dataset)}/rows"
        try:
            return client.get(path, {})["rejected"]
        except DaemonError as exc:
            # The daemon rejects a dataset it does not know with 404. The
            # caller's name check then raises the error that the local path
            # raises, which lists the known datasets.
            if exc.status != 404:
                raise
            return []
    from appliance.storage import list_rejected

    folder = config.storage.home / "buffer" / dataset
    return [asdict(record) for record in list_rejected(folder)]


def _print_segments(dataset: str, segments: list[dict[str, Any]]) -> None:
    if not segments:
        print("(none)")
        return
    for segment in segments:
        print(
            f"{segment['segment']} rows={segment['rows']} "
            f"error={segment['error'] or '?'} "
            f"rejected_at={segment['rejected_at'] or '?'} "
            f"retries={segment['retries']}"
        )
        print(f"  {segment['message'] or '(no reason file)'}")
        print(f"  file {segment['path']}")
    print(
        f"fix the rows or the contract, then run 'appliance datasets rejected "
        f"{dataset} --retry SEGMENT'"
    )


def _retry(config: Config, dataset: str, segment: str, as_json: bool) -> int:
    from appliance.cli._data import print_ingest
    from appliance.client import LONG_TIMEOUT_SECONDS, find_daemon

    client = find_daemon(config.storage.home, config.path, config.api_key)
    if client is not None:
        result = client.post(
            f"/v1/datasets/{dataset_segment(dataset)}/rejected/"
            f"{quote(segment, safe='')}/retry",
            {},
            timeout=LONG_TIMEOUT_SECONDS,
        )
    else:
        from appliance.pandas_probe import skip_pyarrow_pandas_probe
        from appliance.storage import IngestBuffer

        skip_pyarrow_pandas_probe()
        result = asdict(IngestBuffer(config).retry_rejected(dataset, segment))
    if as_json:
        print(json.dumps(result, default=str))
    else:
        print_ingest(result)
    return 0
