"""Model theft of an image-to-image API, and what a thief does afterwards to shake off a watermark.

:func:`steal` trains a surrogate on (query, API answer) pairs, uint8 images as an API returns
them, optionally re-drawing every batch with a paired augmentation attack (``attacks/augment.py``).
Architectures are the official attack's generators (``secbench.models.imaging.IMAGE_MODELS``); the
content loss is L1 or L2 (the official ``SR attack`` options without a GAN term).

Circumvention beyond augmentation, each ``(surrogate, inputs, targets) -> surrogate`` in place:
``finetune`` (more training on the thief's own clean pairs) and ``prune`` (global magnitude
pruning of the convolution weights, no retraining).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune as torch_prune

from attacks.augment import PairAugmentation
from secbench.data.base import ImageSet
from secbench.engine import TrainConfig, fit
from secbench.errors import UnknownNameError
from secbench.imageops import to_uint8
from secbench.models.imaging import IMAGE_MODELS
from secbench.progress import Progress
from secbench.registry import register

CONTENT_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": F.l1_loss,
    "l2": F.mse_loss,
}


def train_image_model(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    cfg: TrainConfig,
    *,
    loss: str,
    generator: torch.Generator,
    device: torch.device,
    augmentation: PairAugmentation | None = None,
    progress: Progress | None = None,
    description: str = "train surrogate",
) -> dict[str, list[float]]:
    """Fit ``model`` in place to map uint8 ``inputs`` to uint8 ``targets`` (both ``(N, 3, H, W)``)."""
    if loss not in CONTENT_LOSSES:
        raise UnknownNameError("surrogate loss", loss, CONTENT_LOSSES)
    hook = None
    if augmentation is not None:
        def hook(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            # batches arrive as exact k/255 floats, so the uint8 round trip is lossless
            moved_x, moved_y = augmentation(to_uint8(x.cpu()), to_uint8(y.cpu()))
            return moved_x.float().div_(255).to(x.device), moved_y.float().div_(255).to(x.device)
    unlabeled = ImageSet(inputs, torch.zeros(len(inputs), dtype=torch.long))
    return fit(model, unlabeled, cfg, generator=generator, device=device, targets=targets,
               loss_fn=CONTENT_LOSSES[loss], batch_hook=hook, progress=progress, description=description)


def image_train_config(epochs: int, *, lr: float = 2e-3, batch_size: int = 32,
                       schedule: str = "cosine") -> TrainConfig:
    """Training of image-to-image models (the task model, surrogates): Adam, no weight decay, no built-in
    augmentation (an attack brings its own)."""
    return TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, optimizer="adam", weight_decay=0.0,
                       schedule=schedule, augment=(), precise_bn=0)


def build_surrogate(arch: str, width: int) -> nn.Module:
    """A fresh surrogate: ``unet``, ``resnet9`` or ``dilated``, ``width`` base channels, RGB → RGB."""
    if arch not in IMAGE_MODELS:
        raise UnknownNameError("surrogate architecture", arch, IMAGE_MODELS)
    return IMAGE_MODELS[arch](3, 3, width=width)


Removal = Callable[..., nn.Module]
"""``removal(surrogate, inputs, targets, *, generator, device, progress) -> surrogate``."""


@register("attack", "finetune")
def finetune(*, epochs: int = 5, lr: float = 2e-4, batch_size: int = 32, loss: str = "l1") -> Removal:
    """Fine-tune the surrogate for ``epochs`` on the thief's own clean (input, ground truth) pairs."""

    def remove(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *, generator: torch.Generator,
               device: torch.device, progress: Progress | None = None) -> nn.Module:
        cfg = image_train_config(epochs, lr=lr, batch_size=batch_size, schedule="constant")
        train_image_model(model, inputs, targets, cfg, loss=loss, generator=generator, device=device,
                          progress=progress, description="fine-tune surrogate on clean pairs")
        return model

    return remove


@register("attack", "prune")
def prune(*, amount: float = 0.5) -> Removal:
    """Zero the ``amount`` (0-1) smallest-magnitude convolution weights of the surrogate, globally."""
    if not 0 <= amount < 1:
        raise ValueError(f"prune amount must be in [0, 1), got {amount}")

    def remove(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, **_: object) -> nn.Module:
        convs = [(m, "weight") for m in model.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
        for module, _ in convs:  # torch's pruning flattens with .view, which channels_last weights refuse
            module.weight.data = module.weight.data.contiguous()
        torch_prune.global_unstructured(convs, pruning_method=torch_prune.L1Unstructured, amount=amount)
        for module, name in convs:
            torch_prune.remove(module, name)  # bake the zeros in: a plain model, as a thief would ship it
        return model

    return remove
