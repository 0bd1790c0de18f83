"""The watermark methods: what is hidden, and through which interference the extractor learns to find it."""

from __future__ import annotations

from dataclasses import dataclass

from secbench.hiding import LogoMark, Mark, StructureMark, logo
from secbench.registry import register

# arXiv 2108.02360's incremental strategy as Poison Ink's code runs it: a first run without
# interference, then rotation, then + crops and resizes, then + flips (earlier flags are kept).
INCREMENTAL_STAGES = ((), ("rotate",), ("rotate", "crop", "resize"), ("rotate", "crop", "resize", "flip"))


@dataclass(frozen=True)
class WatermarkMethod:
    """``mark`` is hidden in every output; R trains through ``stages`` of the interference layer and
    maps unmarked images to the blank with weight ``clean_weight`` (relative to the mark term)."""

    name: str
    mark: Mark
    stages: tuple[tuple[str, ...], ...]
    clean_weight: float
    edge_focus: float = 0.0  # a bounded embedder's share of its budget moved onto edges (embedder.py)


@register("defense", "watermark-baseline")
def baseline(*, size: int, watermark: str | None = None) -> WatermarkMethod:
    """Zhang et al. (AAAI 2020): one logo at fixed pixels in every output; R sees no interference."""
    return WatermarkMethod("baseline", LogoMark(logo(size, watermark or None)), stages=((),), clean_weight=1.0)


@register("defense", "watermark-structure")
def structure(*, key: tuple[float, float, float] = (240 / 255, 120 / 255, 20 / 255),
              edge_weight: float = 13.0, clean_weight: float = 1.0, target: str = "binary",
              edge_focus: float = 0.8) -> WatermarkMethod:
    """arXiv 2108.02360: the owner's key colour painted on the output's Sobel edges (``target``
    binary, or soft: see :class:`~secbench.hiding.StructureMark`); R trains through incremental
    rotate / crop / resize / flip interference with its target recomputed each time."""
    return WatermarkMethod("structure", StructureMark(key, edge_weight=edge_weight, target=target),
                           INCREMENTAL_STAGES, clean_weight=clean_weight, edge_focus=edge_focus)
