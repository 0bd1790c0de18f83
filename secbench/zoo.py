"""The model card table: every registered model's measured size and cost next to its paper's numbers."""

from __future__ import annotations

from typing import Any

import torch

from secbench import registry
from secbench.models.card import CARDS
from secbench.models.flops import count_macs, count_params
from secbench.models.recipe import recipe_for


def _pct(measured: float, reference: float | None) -> float | None:
    return None if not reference else 100.0 * (measured - reference) / reference


def card_rows(input_size: int = 224, num_classes: int = 1000, names: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per registered classification model, measured at ``input_size`` (batch 1, eval).

    Models are built on the meta device: shapes only, no weights, so even CSWin-L costs well under a
    second. Reference columns are filled where a model card exists (numbers measured on the official
    code at 224×224 and 1000 classes, and the paper's table); deltas only make sense at that setting.
    """
    rows = []
    for name in names or registry.list_names("model"):
        registry.get("model", name)  # an unknown name fails here, with the closest match
        with torch.device("meta"):
            model = registry.create_model(name, num_classes=num_classes, img_size=input_size)
            macs = count_macs(model, input_size)
        card = CARDS.get(name)
        comparable = card is not None and input_size == card.input_size and num_classes == 1000
        params = count_params(model)
        rows.append({
            "model": name,
            "params_m": params / 1e6,
            "macs_m": macs / 1e6,
            "official_params_m": card.params / 1e6 if card else None,
            "official_macs_m": card.macs / 1e6 if card else None,
            "d_params_pct": _pct(params, card.params) if comparable else None,
            "d_macs_pct": _pct(macs, card.macs) if comparable else None,
            "paper_params_m": card.published_params_m if card else None,
            "paper_madds_m": card.published_madds_m if card else None,
            "paper_top1": card.published_top1 if card else None,
            "paper": card.paper if card else None,
        })
    return rows


def recipe_rows(names: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per registered classification model: the training recipe it gets by default."""
    rows = []
    for name in names or registry.list_names("model"):
        recipe = recipe_for(name)
        rows.append({"model": name, **recipe.fields(), "source": recipe.source})
    return rows
