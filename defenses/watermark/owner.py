"""The owner's side of model watermarking: train H, R (and D), fine-tune R on a surrogate, verify.

Stage 1 trains embedder H (UNet over output ⊕ mark), extractor R (dilated residual network) and
discriminator D (PatchGAN, LSGAN) jointly on the protected model's outputs (``secbench.hiding``).
Stage 2 is the official "adversarial stage": the owner plays thief once, trains a surrogate on
(its own inputs, marked outputs) without augmentation, and fine-tunes R alone so that the
surrogate's outputs carry the mark too (watermarking.md §A1 "Stage 2"). ``owner_attacks`` lets the
owner play several thieves instead, one surrogate per augmentation attack, and
``unmarked_surrogate`` adds a surrogate of the unmarked model to R's blanks (both departures from
the paper, which trains one plain surrogate: ``("none",)``, and no unmarked one).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attacks.surrogate import build_surrogate, image_train_config, train_image_model
from defenses.watermark.methods import WatermarkMethod
from secbench import checkpoint
from secbench.hiding import (
    HidingConfig,
    HidingNets,
    build_hiding_nets,
    mark_amplitude,
    mark_nc,
    train_hiding,
    tune_extractor,
)
from secbench.imageops import to_uint8
from secbench.progress import Progress
from secbench.registry import create

_BATCH = 256  # inference batch


@dataclass(frozen=True)
class OwnerRecipe:
    """Sizes and budgets of the owner's networks and training (a preset's choice, not the method's)."""

    width: int  # H's and D's base channels (official 64)
    extractor_width: int  # R's channels (official 128)
    depth: int  # H's downsamplings (official 7 at 256×256)
    steps: int  # stage-1 updates
    batch_size: int
    fidelity: tuple[float, float]  # embedding-MSE weight at the start and end of stage 1
    surrogate: str  # the owner's own stage-2 surrogate architecture
    surrogate_epochs: int
    tune_steps: int  # stage-2 updates of R
    tune_lr: float = 1e-4  # official stage-2 learning rate
    residual: str = "free"  # free: the official sigmoid H; bounded: secbench.hiding.BoundedResidual
    min_psnr: float = 36.0  # a bounded H's guaranteed PSNR of every marked output
    start_psnr: float | None = None  # ... and its bound when stage 1 starts (None: min_psnr throughout)
    lr: float = 2e-4  # stage-1 Adam learning rate (official)
    extractor_output: str = "relu"  # R's last activation: secbench.hiding.EXTRACTOR_OUTPUTS (relu: official)
    owner_attacks: tuple[str, ...] = ("none",)  # augmentation of each of the owner's stage-2 surrogates (official: none)
    unmarked_surrogate: bool = False  # stage 2: a surrogate of the unmarked model among R's blanks (official: no)


@dataclass
class Protection:
    """A trained watermark: ``mark`` hides with ``embedder`` and is read back by ``extractor``."""

    method: WatermarkMethod
    embedder: nn.Module
    extractor: nn.Module
    history: dict[str, Any]
    cached: bool

    @torch.no_grad()
    def mark_outputs(self, outputs: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Float ``(N, 3, H, W)`` outputs in [0, 1] → marked, rounded to 8 bits as an API serves them."""
        key = self.method.mark.sample_key(len(outputs), torch.Generator())
        marked = [self.embedder(torch.cat([b.to(device), self.method.mark.hidden(b.to(device), k)], 1)).cpu()
                  for b, k in zip(outputs.split(_BATCH), key.split(_BATCH), strict=True)]
        return quantize(torch.cat(marked))

    @torch.no_grad()
    def extract(self, images: torch.Tensor, device: torch.device) -> torch.Tensor:
        """What R reads in ``(N, 3, H, W)`` images: ``(N, 3, H, W)``."""
        return torch.cat([self.extractor(b.to(device)).cpu() for b in images.split(_BATCH)])

    def read(self, images: torch.Tensor, references: torch.Tensor, device: torch.device) -> Reading:
        """R's reading of each image against the mark expected of its reference.

        The reference is the owner's clean output for the same query (a suspect model answers the
        owner's own verification queries), or the image itself when there is none (a natural image).
        It matters for the structure mark only: the mark's edges are those of the clean output.
        """
        mark = self.method.mark
        key = mark.sample_key(len(images), torch.Generator())
        extracted, expected = self.extract(images, device), mark.expected(references, key)
        return Reading(mark_nc(extracted, expected), mark_amplitude(extracted, expected))


@dataclass(frozen=True)
class Reading:
    """What R read in ``N`` images, each against its expected mark: ``(N,)`` float64 each."""

    nc: torch.Tensor  # normalised correlation of the inks (scale-free; the papers' statistic)
    amplitude: torch.Tensor  # strength of the expected ink in the reading (1: the mark at full strength)

    def detected(self, threshold: float, min_amplitude: float = 0.0) -> torch.Tensor:
        """``(N,)`` bool: NC ≥ ``threshold`` (the papers' rule) and, the owner's option, the mark at least at
        ``min_amplitude`` of its strength, so that a faint echo of the image's own edges is no watermark."""
        return (self.nc >= threshold) & (self.amplitude >= min_amplitude)

    @staticmethod
    def cat(readings: list[Reading]) -> Reading:
        return Reading(torch.cat([r.nc for r in readings]), torch.cat([r.amplitude for r in readings]))


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Round float images in [0, 1] to the nearest of the 256 levels an 8-bit image file can hold."""
    return images.clamp(0, 1).mul(255).round().div(255)


def _nets(recipe: OwnerRecipe, method: WatermarkMethod) -> HidingNets:
    return build_hiding_nets(width=recipe.width, depth=recipe.depth, extractor_width=recipe.extractor_width,
                             residual=recipe.residual, min_psnr=recipe.min_psnr, start_psnr=recipe.start_psnr,
                             edge_focus=method.edge_focus, extractor_output=recipe.extractor_output)


def train_stage_one(nets: HidingNets, method: WatermarkMethod, recipe: OwnerRecipe, covers: torch.Tensor,
                    inputs: torch.Tensor, *, generator: torch.Generator, device: torch.device,
                    progress: Progress | None = None) -> dict[str, list[float]]:
    """Stage 1, in place: H, R (and D) trained jointly on the protected model's ``outputs`` (``covers``),
    with its ``inputs`` among R's unmarked images. Returns the per-step history."""
    hiding = HidingConfig(steps=recipe.steps, batch_size=recipe.batch_size, lr=recipe.lr, fidelity=recipe.fidelity,
                          clean_weight=method.clean_weight, stages=method.stages)
    return train_hiding(nets, covers, method.mark, hiding, generator=generator, device=device, unmarked=inputs,
                        progress=progress, description=f"{method.name}: train H + R + D")


def train_stage_two(protection: Protection, recipe: OwnerRecipe, covers: torch.Tensor, inputs: torch.Tensor,
                    truth: torch.Tensor, *, generator: torch.Generator, device: torch.device,
                    progress: Progress | None = None) -> dict[str, list[float]]:
    """Stage 2, in place on ``protection.extractor``: the owner trains one surrogate per attack of
    ``recipe.owner_attacks`` on (its inputs, marked outputs), as a thief would, and fine-tunes R so that
    H's and every surrogate's outputs give the mark and ``covers``, ``inputs`` and ``truth`` (and, with
    ``recipe.unmarked_surrogate``, a surrogate of the unmarked model trained on ``covers``) the blank."""
    method = protection.method
    marked = protection.mark_outputs(covers, device)

    def surrogate_outputs(answers: torch.Tensor, attack: str, what: str) -> torch.Tensor:
        augmentation = (None if attack == "none" else
                        create("attack", f"aug-{attack}", seed=int(torch.randint(2**31, (1,), generator=generator))))
        surrogate = build_surrogate(recipe.surrogate, recipe.width)
        train_image_model(surrogate, to_uint8(inputs), to_uint8(answers), image_train_config(recipe.surrogate_epochs),
                          loss="l2", generator=generator, device=device, augmentation=augmentation, progress=progress,
                          description=f"{method.name}: owner's surrogate of the {what} model ({attack})")
        with torch.no_grad():
            return quantize(torch.cat([surrogate(b.to(device)).cpu() for b in inputs.split(_BATCH)]))

    stolen = [surrogate_outputs(marked, attack, "marked") for attack in recipe.owner_attacks]
    # a surrogate of the unmarked model answers like a thief's but carries no mark: the negatives R confuses most
    blanks = [covers, inputs, truth, *([surrogate_outputs(covers, "none", "unmarked")] if recipe.unmarked_surrogate else [])]
    tune = HidingConfig(steps=recipe.tune_steps, batch_size=recipe.batch_size, lr=recipe.tune_lr,
                        clean_weight=method.clean_weight, stages=method.stages)
    return tune_extractor(protection.extractor, [marked, *stolen], [covers] * (1 + len(stolen)), blanks,
                          method.mark, tune, generator=generator, device=device, progress=progress,
                          description=f"{method.name}: fine-tune R on the owner's surrogates")


def protect(
    method: WatermarkMethod,
    recipe: OwnerRecipe,
    covers: torch.Tensor,
    inputs: torch.Tensor,
    truth: torch.Tensor,
    *,
    entry: Path,
    generator: torch.Generator,
    device: torch.device,
    progress: Progress | None = None,
) -> Protection:
    """Train (or load from the cache folder ``entry``) the watermark of ``method`` on the owner's
    split: ``covers`` are the protected model's outputs, ``inputs`` its inputs and ``truth`` their ground
    truth, float ``(N, 3, H, W)`` in [0, 1], aligned. In stage 2 R maps all three to the blank (the
    papers' clean loss on domain-A and domain-B images): natural images carry no mark."""
    nets = _nets(recipe, method)
    modules = {"embedder": nets.embedder, "extractor": nets.extractor}
    if (cached := checkpoint.load_modules(entry, modules, device)) is not None:
        return Protection(method, nets.embedder, nets.extractor, cached, cached=True)
    started = time.perf_counter()
    stage1 = train_stage_one(nets, method, recipe, covers, inputs, generator=generator, device=device,
                             progress=progress)
    stage1_s = time.perf_counter() - started
    protection = Protection(method, nets.embedder, nets.extractor, {}, cached=False)
    stage2 = train_stage_two(protection, recipe, covers, inputs, truth, generator=generator, device=device,
                             progress=progress)
    history = {"stage1": stage1, "stage2": stage2, "stage1_s": stage1_s,
               "total_s": time.perf_counter() - started, "recipe": asdict(recipe)}
    checkpoint.save_modules(entry, modules, history)
    protection.history = history
    return protection
