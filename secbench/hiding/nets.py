"""The hiding networks H, R (and D) as both users of the core build them: the owner's watermark and Poison Ink."""

from __future__ import annotations

from secbench.errors import UnknownNameError
from secbench.hiding.embedder import RESIDUALS, BoundedResidual
from secbench.hiding.train import HidingNets
from secbench.models.imaging import DilatedResidualExtractor, PatchDiscriminator, UNet

# R's last activation. relu is the official R; its colour channels can die (a channel at exactly 0 on
# part of the image, where the blank and the key are near 1, gets no gradient back: stage 1 then never
# leaves its plateau, benchmarks/watermark_stage1.py), which a linear output cannot.
EXTRACTOR_OUTPUTS = {"relu": "relu", "linear": "none"}
OFFICIAL_DILATIONS = (2, 2, 2, 2, 4, 4, 4, 4, 1)  # HidingRes


def build_hiding_nets(
    *,
    width: int,
    depth: int,
    extractor_width: int,
    dilations: tuple[int, ...] = OFFICIAL_DILATIONS,
    residual: str = "free",
    min_psnr: float = 36.0,
    start_psnr: float | None = None,
    edge_focus: float = 0.0,
    extractor_output: str = "relu",
    discriminator: bool = True,
) -> HidingNets:
    """H: a ``depth``-level UNet of base ``width`` over cover ⊕ mark, its output the official sigmoid image
    (``residual="free"``) or a :class:`BoundedResidual` of PSNR ≥ ``min_psnr``; R: the dilated residual
    extractor with ``extractor_output`` last; D: the PatchGAN at ``width`` when ``discriminator``.
    Built in this order, so a seeded global generator gives the same initial networks every time."""
    if residual not in RESIDUALS:
        raise UnknownNameError("embedder residual", residual, RESIDUALS)
    if extractor_output not in EXTRACTOR_OUTPUTS:
        raise UnknownNameError("extractor output", extractor_output, tuple(EXTRACTOR_OUTPUTS))
    bounded = residual == "bounded"
    embedder = UNet(6, 3, width=width, depth=depth, norm="instance", out_act="none" if bounded else "sigmoid")
    if bounded:
        embedder = BoundedResidual(embedder, min_psnr=min_psnr, start_psnr=start_psnr, edge_focus=edge_focus)
    extractor = DilatedResidualExtractor(3, 3, width=extractor_width, dilations=dilations,
                                         out_act=EXTRACTOR_OUTPUTS[extractor_output])  # type: ignore[arg-type]
    return HidingNets(embedder, extractor, PatchDiscriminator(3, width=width) if discriminator else None)
