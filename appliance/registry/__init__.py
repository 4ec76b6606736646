"""The model registry: promotion, rollback, queries, model cards and exports."""

from appliance.registry._card import (
    CardData,
    card_html,
    collect_card,
    render_card,
    write_card,
)
from appliance.registry._export import FORMATS, export_version, mlmodel_yaml
from appliance.registry._promote import (
    UNCHANGED,
    is_serving_alias,
    promote,
    rollback,
)
from appliance.registry._queries import (
    event_record,
    history,
    model_versions,
    resolve,
    run_details,
    run_summaries,
    version_from_record,
)

__all__ = [
    "FORMATS",
    "UNCHANGED",
    "CardData",
    "card_html",
    "collect_card",
    "event_record",
    "export_version",
    "history",
    "is_serving_alias",
    "mlmodel_yaml",
    "model_versions",
    "promote",
    "render_card",
    "resolve",
    "rollback",
    "run_details",
    "run_summaries",
    "version_from_record",
    "write_card",
]
