"""Path segments of daemon URLs, built from names given on the command line.

A command that names a dataset, model or key puts the name into the URL of
a daemon route. The daemon decodes ``%2F`` before it matches routes, so a
name with ``/``, an empty name or a dot segment would reach another route
even when quoted. A dataset name gets the check the local path makes first,
so a command prints the same error with and without a daemon.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from appliance.config import dataset_name_problem
from appliance.errors import ApplianceError, NotFoundError, RequestError


def dataset_segment(name: str) -> str:
    """Return the dataset `name` quoted as one path segment of a daemon URL.

    Raises:
        RequestError: `name` is not a valid dataset name.
    """
    problem = dataset_name_problem(name)
    if problem is not None:
        raise RequestError(problem)
    return quote(name, safe="")


def stored_dataset_segment(
    client: Any, name: str, error: type[ApplianceError] = NotFoundError, hint: str = ""
) -> str:
    """Return `name` quoted as a path segment when it is valid or stored.

    A catalog written before dataset names were checked may hold a version
    of an invalid name, which ``datasets show`` and ``datasets remove`` still
    reach when the name is one path component. The error is `error` with
    `hint` at the end of its message, as the local path raises it.

    Raises:
        NotFoundError: `name` is invalid and the daemon's catalog has no
            version of it (or `error`, when given).
    """
    problem = dataset_name_problem(name)
    if problem is not None and not _stored(client, name):
        raise error(problem + hint)
    return quote(name, safe="")


def name_segment(kind: str, name: str) -> str:
    """Return a model or key `name` quoted as one path segment of a daemon URL.

    The check runs with and without a daemon, so both print the same error.

    Raises:
        RequestError: `name` is empty, ``.`` or ``..``, or contains ``/``,
            so no route of the daemon can name it.
    """
    if name in ("", ".", "..") or "/" in name:
        raise RequestError(
            f"invalid {kind} name {name!r}; a {kind} name is not empty, '.' or "
            "'..' and contains no '/', so check the name"
        )
    return quote(name, safe="")


def _stored(client: Any, name: str) -> bool:
    if name in ("", ".", "..") or "/" in name:
        return False
    versions = client.get("/v1/admin/datasets")["datasets"]
    return any(record["dataset"] == name for record in versions)
