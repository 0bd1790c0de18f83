"""The watermark methods: what is hidden, and through which interference the extractor learns to find it."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from secbench.hiding import LogoMark, Mark, StructureMark, logo
from secbench.imageops import edge_chroma
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


ORANGE_KEY = (240 / 255, 120 / 255, 20 / 255)  # the key of secbench's first structure runs (#f07814)
KEY_HUES = 12  # candidate keys: hues 30° apart at ORANGE_KEY's saturation and value
KEY_MATCH = 0.8  # cosine of edge chroma to a key's chroma above which an image's structure has that colour


def key_palette() -> torch.Tensor:
    """The candidate key colours ``(KEY_HUES, 3)`` in [0, 1], from hue 0° (red); ORANGE_KEY has hue 28°."""
    _, saturation, value = colorsys.rgb_to_hsv(*ORANGE_KEY)
    return torch.tensor([colorsys.hsv_to_rgb(i / KEY_HUES, saturation, value) for i in range(KEY_HUES)])


def hex_colour(rgb: Sequence[float]) -> str:
    """``(r, g, b)`` in [0, 1] as ``#rrggbb``."""
    return "#" + "".join(f"{round(c * 255):02x}" for c in rgb)


def has_key_colour(images: torch.Tensor, palette: torch.Tensor) -> torch.Tensor:
    """Whether each of ``images`` ``(N, 3, H, W)`` already has each key of ``palette`` ``(K, 3)`` on its
    structure (edge chroma within cos ``KEY_MATCH`` of the key's): bool ``(N, K)``."""
    keys = palette - palette.mean(1, keepdim=True)
    return F.cosine_similarity(edge_chroma(images)[:, None], keys[None], dim=2) > KEY_MATCH


def key_shares(images: torch.Tensor, palette: torch.Tensor) -> torch.Tensor:
    """For each key of ``palette`` ``(K, 3)``, the share of ``images`` whose structure has its colour: ``(K,)``."""
    return has_key_colour(images, palette).double().mean(0)


def least_confusable_key(images: torch.Tensor) -> tuple[tuple[float, float, float], float]:
    """The key the owner's own ``images`` (its model's answers) least often carry on their edges, and
    that share. R reads a key-coloured edge as the mark: the key a thief's images share least is the one
    an unmarked image is least often mistaken for (README, watermark results)."""
    palette = key_palette()
    shares = key_shares(images, palette)
    best = int(shares.argmin())
    r, g, b = palette[best].tolist()
    return (r, g, b), shares[best].item()


@register("defense", "watermark-structure")
def structure(*, key: tuple[float, float, float] = ORANGE_KEY,
              edge_weight: float = 13.0, clean_weight: float = 1.0, target: str = "binary",
              edge_focus: float = 0.8) -> WatermarkMethod:
    """arXiv 2108.02360: the owner's key colour painted on the output's Sobel edges (``target``
    binary, or soft: see :class:`~secbench.hiding.StructureMark`); R trains through incremental
    rotate / crop / resize / flip interference with its target recomputed each time."""
    return WatermarkMethod("structure", StructureMark(key, edge_weight=edge_weight, target=target),
                           INCREMENTAL_STAGES, clean_weight=clean_weight, edge_focus=edge_focus)
