"""Model cards: the numbers a re-implementation is checked against, next to the code that must meet them."""

from __future__ import annotations

from dataclasses import dataclass

CARDS: dict[str, ModelCard] = {}


@dataclass(frozen=True)
class ModelCard:
    """Reference numbers at 1000 classes, 224×224, batch 1, eval mode.

    ``params`` and ``macs`` were measured on the official code (MACs = FlopCounterMode ÷ 2: conv,
    linear and matmul); the ``published_*`` fields are the paper's table (None where it gives none).
    """

    name: str
    paper: str  # arXiv id
    params: int
    macs: int
    published_params_m: float | None = None
    published_madds_m: float | None = None
    published_top1: float | None = None
    input_size: int = 224


def add_card(card: ModelCard) -> ModelCard:
    """Register ``card`` under its model name (a duplicate raises)."""
    if card.name in CARDS:
        raise ValueError(f"model card {card.name!r} is defined twice")
    CARDS[card.name] = card
    return card
