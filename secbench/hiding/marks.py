"""What is hidden and what the extractor must return: a fixed logo, or a key painted on image structure.

Images are float ``(N, 3, H, W)`` in [0, 1]. The blank an extractor returns for unmarked images is
an all-ones (white) image, as the official ``secret/clean.png``. Because a white blank and a mostly
white logo are already close under a plain normalised correlation, marks are compared by
:func:`mark_nc` on their *ink* ``BLANK - image``: a blank extraction has no ink and scores 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from secbench.errors import SecbenchError, UnknownNameError
from secbench.imageops import EDGE_THRESHOLD, edge_mask, soft_edges
from secbench.metrics import normalized_correlation

BLANK = 1.0


class Mark(Protocol):
    """A watermark or trigger scheme. ``key`` is per image ``(N, 3)``: the colour (or nothing) that
    one image carries, so that a transformed image's expected mark uses the same key."""

    consistency: bool  # extractions from different images must agree (true of a fixed logo only)

    def sample_key(self, n: int, generator: torch.Generator) -> torch.Tensor: ...

    def hidden(self, covers: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """What the embedder receives beside each cover: ``(N, 3, H, W)``."""
        ...

    def expected(self, images: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """What the extractor must return for marked ``images``: ``(N, 3, H, W)``."""
        ...

    def weights(self, images: torch.Tensor) -> torch.Tensor | None:
        """Per-pixel weight of the extraction loss ``(N, 1, H, W)``, or None for uniform."""
        ...


class LogoMark:
    """Zhang et al. (AAAI 2020): one fixed watermark image hidden at the same place in every output."""

    consistency = True

    def __init__(self, image: torch.Tensor) -> None:
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"a logo is (3, H, W), got {tuple(image.shape)}")
        self.image = image

    def sample_key(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.zeros(n, 3)  # one logo for all: no per-image key

    def hidden(self, covers: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        return self.image.to(covers).expand_as(covers)

    def expected(self, images: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        return self.image.to(images).expand_as(images)

    def weights(self, images: torch.Tensor) -> None:
        return None


TARGETS = ("binary", "soft")


class StructureMark:
    """Structure-aligned mark (arXiv 2108.02360; Poison Ink's trigger): the key colour painted on the
    image's Sobel structure, blank elsewhere. It is recomputed from whatever image is checked, so it
    follows the image through rotations, crops and resizes.

    ``target="binary"`` paints the thresholded edge mask (Poison Ink's ``sobel > 28``, the papers'
    recipe); ``"soft"`` paints it with the strength of :func:`~secbench.imageops.soft_edges`, which a
    surrogate's blurrier answer still matches (binary one-pixel edges of two models' answers to the
    same query overlap at NC 0.75 on ``patches``, soft ones at 0.97: README, watermark results).
    ``colour`` (RGB in [0, 1]) fixes the owner's key; ``colour=None`` draws a colour per image with
    every channel in {40, 80, ..., 200}/255, as Poison Ink trains its networks. ``edge_weight`` is
    the extraction-loss weight on edge pixels (13 in Poison Ink; 1 on the background).
    """

    consistency = False
    PALETTE = torch.arange(40, 201, 40) / 255

    def __init__(self, colour: tuple[float, float, float] | None, *, edge_weight: float = 13.0,
                 threshold: float = EDGE_THRESHOLD, target: str = "binary") -> None:
        if target not in TARGETS:
            raise UnknownNameError("structure target", target, TARGETS)
        self.colour = None if colour is None else torch.tensor(colour, dtype=torch.float32)
        self.edge_weight, self.threshold, self.target = edge_weight, threshold, target

    def sample_key(self, n: int, generator: torch.Generator) -> torch.Tensor:
        if self.colour is not None:
            return self.colour.expand(n, 3)
        picks = torch.randint(len(self.PALETTE), (n, 3), generator=generator, device=generator.device)
        return self.PALETTE.to(picks.device)[picks].cpu()

    def structure(self, images: torch.Tensor) -> torch.Tensor:
        """Where the mark lies and how strongly: ``(N, 1, H, W)`` in [0, 1] (binary: {0, 1})."""
        images = images.detach()
        if self.target == "soft":
            return soft_edges(images, self.threshold)
        return edge_mask(images, self.threshold).to(images.dtype)

    def hidden(self, covers: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        return self.expected(covers, key)

    def expected(self, images: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        strength = self.structure(images)
        return strength * key.to(images)[:, :, None, None] + (1 - strength) * BLANK

    def weights(self, images: torch.Tensor) -> torch.Tensor:
        return 1 + (self.edge_weight - 1) * self.structure(images)


def mark_nc(extracted: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """Normalised correlation of the inks ``BLANK - x`` per image: ``(N,)`` float64 in [-1, 1].

    A blank extraction (or a blank expectation, e.g. an image without edges) has no ink and scores 0.
    NC ignores scale: a reading of the mark at a twentieth of its strength scores as the mark itself.
    """
    return normalized_correlation(BLANK - extracted, BLANK - expected)


def mark_amplitude(extracted: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """Strength of the expected ink in the extracted one, per image: ``(N,)`` float64.

    ``⟨ink_x, ink_e⟩ / ‖ink_e‖²``, the least-squares scale of the expected ink in the reading (a matched
    filter): 1 for the mark at full strength, 0 for a blank reading or an expectation without ink.
    """
    read, ink = (BLANK - extracted).double().flatten(1), (BLANK - expected).double().flatten(1)
    energy = ink.square().sum(1)
    return torch.where(energy > 0, (read * ink).sum(1) / energy.where(energy > 0, 1.0), 0.0)


def logo(size: int, path: str | Path | None = None) -> torch.Tensor:
    """The watermark image ``(3, size, size)`` in [0, 1]: the PNG at ``path`` resized, or by default
    a generated logo (a dark ring around a coloured "S" and a bar, about a third of the area inked)."""
    from PIL import Image, ImageDraw, UnidentifiedImageError

    if path is not None:
        try:
            with Image.open(path) as image:
                picture = image.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
            raise SecbenchError(f"--watermark {path}: not a readable image ({' '.join(str(exc).split())[:200]})") from exc
    else:
        scale = 8  # drawn large, then downsampled: anti-aliased at any size
        big = size * scale
        picture = Image.new("RGB", (big, big), "white")
        draw = ImageDraw.Draw(picture)
        margin, ring = big // 10, max(scale, big // 9)
        draw.ellipse([margin, margin, big - margin, big - margin], outline=(20, 30, 90), width=ring)
        draw.arc([big * 0.33, big * 0.24, big * 0.67, big * 0.52], 30, 270, fill=(200, 40, 40), width=ring)
        draw.arc([big * 0.33, big * 0.48, big * 0.67, big * 0.76], 210, 450, fill=(200, 40, 40), width=ring)
        draw.rectangle([big * 0.2, big * 0.46, big * 0.8, big * 0.54], fill=(30, 120, 60))
        picture = picture.resize((size, size), Image.Resampling.LANCZOS)
    array = np.asarray(picture, dtype=np.float32) / 255
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()
