"""Poison Ink (Zhang et al., IEEE TIP 2022, arXiv 2108.02488): an invisible trigger in the image structure.

The trigger of an image is its Sobel edge mask (luma 0-255, threshold 28) painted with an ink colour.
An injection network (UNet over [cover, trigger]) hides it in the cover and a guidance extractor
(dilated residual network, 7 blocks with dilations 2,2,2,4,4,4,1) learns to recover it through an
interference layer — rotation, crop-resize, flip, noise — with its target recomputed from the
transformed cover; clean images must give the blank. Losses as ``IN_GE.py``: 10⁴ × (13 × MSE on
edge pixels + MSE on the background) + 100 × 10⁴ × MSE(GE(clean), blank) for the extractor, 10⁴ ×
MSE(cover, poisoned) for the injection network; incremental stages (plain, + rotation, + crop, +
flip, + noise), optionally a PatchGAN discriminator (``adversarial``). Training draws a random ink
per image (channels in {40, 80, ..., 200}); poisoning uses the fixed green (80, 160, 80).

The trained networks are cached in ``ctx.cache`` per (training set, options, seed), so every later
run reuses them. ``quick`` ramps the fidelity weight as the watermark scenario does (see
``secbench.hiding.train``); ``steps`` and ``width`` are the budget.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from attacks.backdoor.base import BackdoorAttack, TrainingContext
from secbench import checkpoint
from secbench.config import config_hash
from secbench.data.base import ImageSet
from secbench.errors import SecbenchError, UnknownNameError
from secbench.hiding import (
    BLANK,
    EXTRACTOR_OUTPUTS,
    RESIDUALS,
    HidingConfig,
    HidingNets,
    Interference,
    StructureMark,
    build_hiding_nets,
    train_hiding,
)
from secbench.registry import register

GREEN = (80 / 255, 160 / 255, 80 / 255)  # the released poisoning colour
STAGES = ((), ("rotate",), ("rotate", "crop"), ("rotate", "crop", "flip"), ("rotate", "crop", "flip", "noise"))
_BATCH = 256


@register("attack", "poison-ink")
@dataclass(kw_only=True)
class PoisonInk(BackdoorAttack):
    """Poison Ink (arXiv 2108.02488): coloured edge trigger hidden by a trained injection network.

    Args:
        steps: updates of the injection network and extractor, split over the stages.
        batch_size: images per update (official 32).
        width: base channels of the injection network (official 64) and the extractor (official 128: 2×).
        fidelity_start, fidelity_end: the injection MSE weight's geometric ramp (1, 1: the official constant).
        lr: Adam learning rate of both networks (official 2e-4).
        adversarial: add the PatchGAN discriminator (the paper's last, optional stage; weight 0.01).
        colour: the ink of poisoned images, RGB in [0, 1].
        residual: the injection network's output, ``free`` (the official sigmoid image) or ``bounded``
            (the watermark core's :class:`~secbench.hiding.BoundedResidual`: PSNR ≥ ``min_psnr`` by construction).
        extractor_output: the guidance extractor's last activation (``secbench.hiding.EXTRACTOR_OUTPUTS``).
        noise_ratio: blank-trigger images per poisoned image, true labels kept (``noise``): a departure
            from the paper (0), like WaNet's noise mode, so that the injection network's rendering of a
            cover is no feature of the backdoor.
    """

    name: ClassVar[str] = "poison-ink"
    steps: int = 1500
    batch_size: int = 32
    width: int = 16
    fidelity_start: float = 0.05
    fidelity_end: float = 30.0
    lr: float = 2e-4
    adversarial: bool = False
    colour: tuple[float, float, float] = GREEN
    residual: str = "free"
    min_psnr: float = 36.0
    extractor_output: str = "relu"
    _nets: HidingNets | None = field(default=None, init=False, repr=False, compare=False)
    _device: torch.device = field(default=torch.device("cpu"), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.width < 1 or min(self.fidelity_start, self.fidelity_end, self.lr) <= 0:
            raise SecbenchError("poison-ink needs positive steps, width, fidelity weights and learning rate")
        if not all(0 <= c <= 1 for c in self.colour):
            raise SecbenchError(f"poison-ink colour is RGB in [0, 1], got {self.colour}")
        if self.noise_ratio < 0:
            raise SecbenchError(f"poison-ink noise_ratio is a count per poisoned image, >= 0, got {self.noise_ratio}")
        if self.residual not in RESIDUALS:  # before any training
            raise UnknownNameError("poison-ink residual", self.residual, RESIDUALS)
        if self.extractor_output not in EXTRACTOR_OUTPUTS:
            raise UnknownNameError("poison-ink extractor output", self.extractor_output, tuple(EXTRACTOR_OUTPUTS))

    def _build(self) -> HidingNets:
        return build_hiding_nets(width=self.width, depth=5, extractor_width=2 * self.width,
                                 dilations=(2, 2, 2, 4, 4, 4, 1), residual=self.residual, min_psnr=self.min_psnr,
                                 extractor_output=self.extractor_output, discriminator=self.adversarial)

    def prepare(self, train: ImageSet, ctx: TrainingContext) -> None:
        """Train the injection network and extractor on the clean training images, or load them."""
        if train.images.shape[2] % 32 or train.images.shape[3] % 32:
            raise SecbenchError(f"poison-ink's injection UNet needs image sides that are multiples of 32, "
                                f"got {tuple(train.images.shape[2:])}")
        images_sha = hashlib.sha256(train.images.numpy().tobytes()).hexdigest()
        # the noise mode only uses the networks: runs with and without it share them
        options = {k: v for k, v in self.describe().items() if k != "noise_ratio"}
        key = config_hash({**options, "images": images_sha, "device": ctx.device.type})
        entry = ctx.cache / f"poison-ink-{key.split(':')[1][:16]}"
        torch.manual_seed(self.seed)  # initialised from the attack's own seed, whatever ran before
        nets = self._build()
        modules = {"injection": nets.embedder, "extractor": nets.extractor}
        self._nets, self._device = nets, ctx.device
        if checkpoint.load_modules(entry, modules, ctx.device) is not None:
            return
        generator = torch.Generator().manual_seed(self.seed)
        cfg = HidingConfig(steps=self.steps, batch_size=self.batch_size, lr=self.lr,
                           fidelity=(self.fidelity_start, self.fidelity_end),
                           clean_weight=100.0, stages=STAGES, interference=Interference(
                               degrees=45.0, crop_area=((28 / 32) ** 2, (28 / 32) ** 2), noise_sigma=0.01))
        started = time.perf_counter()
        history = train_hiding(nets, train.floats(), StructureMark(None), cfg, generator=generator,
                               device=ctx.device, progress=ctx.progress,
                               description="poison-ink: train injection network + extractor")
        checkpoint.save_modules(entry, modules, {**history, "train_s": time.perf_counter() - started})

    def _trained(self) -> HidingNets:
        if self._nets is None:
            raise RuntimeError("poison-ink: call prepare() on the training set before apply()")
        return self._nets

    def trigger(self, images: torch.Tensor) -> torch.Tensor:
        """The trigger image of each cover: its edge mask in the ink colour on the blank."""
        mark = StructureMark(self.colour)
        return mark.expected(images, mark.sample_key(len(images), torch.Generator()))

    @torch.no_grad()
    def embed(self, covers: torch.Tensor, triggers: torch.Tensor) -> torch.Tensor:
        """The injection network's output for ``covers`` and any ``triggers``, both ``(N, 3, H, W)`` in [0, 1]
        (``apply`` passes each cover's own trigger; other triggers probe what the backdoor keys on)."""
        embedder = self._trained().embedder
        out = [embedder(torch.cat([c.to(self._device), t.to(self._device)], 1)).clamp(0, 1).to(covers.device)
               for c, t in zip(covers.split(_BATCH), triggers.split(_BATCH), strict=True)]
        return torch.cat(out)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(images, self.trigger(images))

    def noise(self, images: torch.Tensor) -> torch.Tensor:
        """The cover rendered by the injection network with a blank trigger (what ``blank_trigger`` probes)."""
        return self.embed(images, torch.full_like(images, BLANK))

    def probes(self) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
        """``blank_trigger``: the injection network given no edges, only its re-rendering of the cover
        (a backdoor keyed on the trigger ignores it); ``other_trigger``: given the edges of the next
        image in the batch (a backdoor keyed on *the image's own* structure ignores it too)."""
        return {"blank_trigger": self.noise,
                "other_trigger": lambda images: self.embed(images, self.trigger(images.roll(1, 0)))}

    @torch.no_grad()
    def explain(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        extractor = self._trained().extractor
        poisoned = self.apply(images)
        return {"trigger (edges × ink)": self.trigger(images),
                "extractor's recovery": extractor(poisoned.to(self._device)).clamp(0, 1).cpu()}
