"""Registry calls that go to the running daemon, or to the catalog when none runs.

While a daemon runs it has the only connection to the catalog, so reads and
alias changes go through its ``/v1/admin/registry`` routes. Without a daemon,
the command calls the same `appliance.registry` function on its own
connection.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from typing import Any

from appliance.cli._urls import name_segment
from appliance.config import Config


def registry_read(
    config: Config,
    path: str,
    key: str,
    params: dict[str, Any],
    function: Callable[..., Any],
    *args: Any,
) -> Any:
    """Return ``function(catalog, *args)``, or the daemon's response under `key`."""
    from appliance.client import find_daemon

    client = find_daemon(config.storage.home, config.path, config.api_key)
    if client is not None:
        return client.get(f"/v1/admin/registry{path}", params)[key]
    from appliance.storage import Catalog

    with Catalog(config.storage.home, read_only=True) as catalog:
        return function(catalog, *args)


def registry_version(config: Config, name: str, reference: str | None) -> Any:
    """Return the `ModelVersion` that ``NAME@REFERENCE`` names; None is the champion.

    Raises:
        NotFoundError: The model, version or alias does not exist.
    """
    from appliance.registry import resolve, version_from_record

    record = registry_read(
        config,
        f"/models/{name_segment('model', name)}/resolve",
        "version",
        {"reference": reference},
        resolve,
        name,
        reference,
    )
    return version_from_record(record)


def registry_lookup(
    config: Config, run_ids: list[str], details: bool = True
) -> list[dict[str, Any]]:
    """Return runs with artifacts and child run ids, in the order given."""
    from appliance.client import find_daemon
    from appliance.registry import run_details

    client = find_daemon(config.storage.home, config.path, config.api_key)
    if client is not None:
        body = {"run_ids": run_ids, "details": details}
        return client.post("/v1/admin/registry/runs/lookup", body)["runs"]
    from appliance.storage import Catalog

    with Catalog(config.storage.home, read_only=True) as catalog:
        return run_details(catalog, run_ids, details)


def registry_change(
    config: Config,
    model: str,
    action: str,
    body: dict[str, Any],
    function: Callable[..., Any],
    by: str | None = None,
) -> dict[str, Any]:
    """Change an alias of `model` through the daemon, or in the catalog.

    `action` is ``promote`` or ``rollback`` and `function` the matching
    `appliance.registry` function, called with the fields of `body` as
    keyword arguments when no daemon runs. The target version's signature
    is checked before the alias moves.

    `by` (``--by``) is the actor that the alias history records, else the
    OS user. A daemon records the API key instead when the command sends
    one, so `by` is then rejected rather than dropped.

    Raises:
        RegistryError: `by` is set while the command sends an API key to
            the daemon.
    """
    from appliance.client import find_daemon
    from appliance.registry import event_record

    client = find_daemon(config.storage.home, config.path, config.api_key)
    path = f"/v1/admin/registry/models/{name_segment('model', model)}/{action}"
    if client is not None and config.api_key:
        _check_no_actor(by)
        return client.post(path, body)
    body = {**body, "actor": by or getpass.getuser()}
    if client is not None:
        return client.post(path, body)
    from appliance.signing import trusted_keys, version_check
    from appliance.storage import Catalog

    check = version_check(trusted_keys(config))
    with Catalog(config.storage.home) as catalog:
        event, _ = function(catalog, model, load=check, **body)
    return event_record(event)


def _check_no_actor(by: str | None) -> None:
    """Reject ``--by`` on a change sent with an API key, which names the actor."""
    from appliance.errors import RegistryError

    if by is not None:
        raise RegistryError(
            f"--by {by!r} is not accepted with an API key (APPLIANCE_API_KEY), "
            "because the alias history then records the key's name and role as "
            "the actor; leave out --by, and put who asked for the change in "
            "--reason"
        )
