"""Hiding a mark in images and recovering it: the machinery shared by model watermarking
(``defenses/watermark``) and Poison Ink's trigger (``attacks/backdoor``).

An embedder H writes a mark into a cover image, an extractor R recovers it, optionally through
an interference layer of random geometric transforms, and R returns a blank for unmarked images.
"""

from secbench.hiding.embedder import RESIDUALS, BoundedResidual
from secbench.hiding.interference import INTERFERENCES, Interference
from secbench.hiding.marks import BLANK, TARGETS, LogoMark, Mark, StructureMark, logo, mark_amplitude, mark_nc
from secbench.hiding.nets import EXTRACTOR_OUTPUTS, build_hiding_nets
from secbench.hiding.train import HidingConfig, HidingNets, extractor_loss, train_hiding, tune_extractor

__all__ = [
    "BLANK",
    "BoundedResidual",
    "EXTRACTOR_OUTPUTS",
    "INTERFERENCES",
    "HidingConfig",
    "HidingNets",
    "Interference",
    "LogoMark",
    "Mark",
    "RESIDUALS",
    "StructureMark",
    "TARGETS",
    "build_hiding_nets",
    "extractor_loss",
    "logo",
    "mark_amplitude",
    "mark_nc",
    "train_hiding",
    "tune_extractor",
]
