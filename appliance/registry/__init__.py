"""Registry outputs: model cards and exports to other model formats."""

from appliance.registry._card import CardData, collect_card, render_card, write_card
from appliance.registry._export import FORMATS, export_version, mlmodel_yaml
from appliance.registry._promote import Promoter

__all__ = [
    "FORMATS",
    "CardData",
    "Promoter",
    "collect_card",
    "export_version",
    "mlmodel_yaml",
    "render_card",
    "write_card",
]
