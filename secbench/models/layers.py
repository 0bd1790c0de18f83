"""Building blocks every model family shares: in-model normalisation and the common classifier surface."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvClassifier", "Normalize", "SMALL_INPUT_MAX", "stem_stride"]

# Inputs up to this side get a stride-1 stem in the ImageNet-shaped families (mobilenet-v3-small, MicroNet,
# Mobile-Former): their 32x downsampling would leave 1x1 maps for the last stages of a 32x32 image.
SMALL_INPUT_MAX = 64


def stem_stride(img_size: int, imagenet_stride: int = 2) -> int:
    """The stem's stride: 1 for inputs up to :data:`SMALL_INPUT_MAX` px (the usual CIFAR change), else the ImageNet one."""
    return 1 if img_size <= SMALL_INPUT_MAX else imagenet_stride


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std``, the first op of every secbench model.

    Normalisation lives inside the model so that attacks, triggers and defenses all work on
    images in [0, 1] (the torchattacks contract). ``mean`` and ``std`` are buffers of shape
    ``(1, C, 1, 1)``: they follow ``.to(device)`` and are saved in the ``state_dict``, but are
    never trained.

    Shape: ``(N, C, H, W)`` in [0, 1] → ``(N, C, H, W)``, roughly zero-mean and unit-variance.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean and std need one value per channel, got {len(mean)} and {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {tuple(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={tuple(self.mean.flatten().tolist())}, std={tuple(self.std.flatten().tolist())}"


class ConvClassifier(nn.Module):
    """The surface every secbench model exposes, whatever its family.

    ``x`` → :class:`Normalize` → ``stages`` → global average pool → ``pre_logits`` → ``classifier``.
    Global pooling makes every model accept any input size its strides allow.

    Attributes:
        normalize: the :class:`Normalize` module.
        stages: the convolutional trunk, an ``nn.Sequential`` whose last entry is ``last_conv``.
        pre_logits: what runs between pooling and ``classifier`` (``nn.Identity`` unless the family has
            a hidden head layer, as MobileNetV3 does).
        classifier: the final ``nn.Linear``; its ``in_features`` is the width ``D`` of :meth:`features`.

    Shape: ``(N, 3, H, W)`` float in [0, 1] → ``(N, num_classes)`` logits.
    """

    def __init__(
        self,
        stages: nn.Sequential,
        classifier: nn.Linear,
        *,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        pre_logits: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.stages = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.pre_logits = pre_logits if pre_logits is not None else nn.Identity()
        self.classifier = classifier

    @property
    def last_conv(self) -> nn.Module:
        """The last convolutional block, ``stages[-1]``: its output ``(N, C, h, w)`` is what gets pooled.

        Fine-Pruning (Liu et al. 2018, arXiv 1805.12185) ranks the ``C`` output channels of this
        module by their mean activation on clean data and prunes the least active ones, e.g. with a
        forward hook that multiplies the output by a channel mask. A property, not a submodule
        attribute, so that the block is not registered (and saved) twice.
        """
        return self.stages[-1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features: ``(N, 3, H, W)`` in [0, 1] → ``(N, D)``, ``D = classifier.in_features``."""
        return self.pre_logits(self.pool(self.stages(self.normalize(x))).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
