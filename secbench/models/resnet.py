"""CIFAR-style ResNet-18 and its pre-activation variant, the standard backdoor-benchmark victims.

- ResNet: He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016, arXiv 1512.03385.
- Pre-activation ResNet: He, Zhang, Ren, Sun, "Identity Mappings in Deep Residual Networks", ECCV 2016,
  arXiv 1603.05027.

Both follow the CIFAR adaptation of kuangliu/pytorch-cifar that BackdoorBench uses (SCLBD/BackdoorBench,
``models/preact_resnet.py``): a 3×3 stride-1 stem without max-pool, four stages of
two BasicBlocks with widths 64-128-256-512 (stages 2-4 halve the resolution), global average pooling
and one linear layer; 1×1 projection shortcuts where the shape changes; PyTorch's default weight init.
Global pooling (BackdoorBench's adaptive variant of the original ``AvgPool2d(4)``) lets any input size
work; at 32×32 the last stage runs at 4×4.

What differs from the papers: the ImageNet stem (7×7 stride-2 conv and max-pool) is replaced by the
CIFAR stem above; and, like BackdoorBench's PreActResNet18, the pre-activation network has no final
BN-ReLU after the last block (the paper adds one, Sec. 4.1), so its features are a pooled pre-activation sum.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from secbench.models.layers import ConvClassifier
from secbench.models.recipe import Recipe, add_recipe
from secbench.registry import register

__all__ = ["BasicBlock", "PreActBlock", "ResNet", "preact_resnet18", "resnet18"]


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_channels: int, out_channels: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Post-activation residual block (1512.03385): ``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))``.

    Shape: ``(N, C_in, H, W)`` → ``(N, C_out, H / stride, W / stride)``, non-negative (ends in ReLU).
    """

    preact: ClassVar[bool] = False

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                _conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """Pre-activation residual block (1603.05027): ``conv(relu(bn(conv(relu(bn(x)))))) + shortcut``.

    Nothing follows the addition, so the identity path stays clean from block to block.

    Shape: ``(N, C_in, H, W)`` → ``(N, C_out, H / stride, W / stride)``, any sign.
    """

    preact: ClassVar[bool] = True

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = _conv3x3(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.shortcut: nn.Conv2d | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = _conv1x1(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        # A projection shortcut takes the pre-activated input (as in the paper's code); identity takes x.
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return out + shortcut


class ResNet(ConvClassifier):
    """CIFAR-style ResNet: 3×3 stem, one stage per entry of ``depths``, global pool, linear.

    Args:
        block: :class:`BasicBlock` (ResNet) or :class:`PreActBlock` (pre-activation ResNet). A
            pre-activation network's stem is a bare conv, since every block starts with BN-ReLU.
        depths: blocks per stage; the first stage keeps the resolution, each later one halves it.
        num_classes: number of logits.
        mean, std: per-channel statistics for the in-model :class:`~secbench.models.layers.Normalize`.
        widths: output channels of each stage.

    ``stages`` holds ``stem`` and ``layer1`` … ``layer4`` (named as in torchvision and BackdoorBench).
    ``last_conv`` is ``layer4``, the module BackdoorBench's Fine-Pruning hooks: its ``widths[-1]``
    output channels are pooled into the features (``D = widths[-1]``). They are post-ReLU (non-negative)
    with :class:`BasicBlock` and a residual sum of any sign with :class:`PreActBlock`.

    Shape: ``(N, 3, H, W)`` float in [0, 1] → ``(N, num_classes)`` logits.
    """

    def __init__(
        self,
        block: type[BasicBlock | PreActBlock],
        depths: tuple[int, ...],
        *,
        num_classes: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        widths: tuple[int, ...] = (64, 128, 256, 512),
    ) -> None:
        stem: list[nn.Module] = [_conv3x3(3, widths[0])]
        if not block.preact:
            stem += [nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
        stages: OrderedDict[str, nn.Module] = OrderedDict(stem=nn.Sequential(*stem))
        in_channels = widths[0]
        for i, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            blocks = []
            for j in range(depth):
                blocks.append(block(in_channels, width, stride=2 if i > 0 and j == 0 else 1))
                in_channels = width
            stages[f"layer{i + 1}"] = nn.Sequential(*blocks)
        super().__init__(nn.Sequential(stages), nn.Linear(in_channels, num_classes), mean=mean, std=std)


@register("model", "resnet18")
def resnet18(
    *,
    num_classes: int,
    img_size: int = 32,
    mean: tuple[float, ...] = (0.5, 0.5, 0.5),
    std: tuple[float, ...] = (0.25, 0.25, 0.25),
) -> ResNet:
    """CIFAR ResNet-18 (1512.03385): 11,173,962 params for 10 classes, 0.56 GMACs at 32×32.

    ``img_size`` is part of the common builder signature; global pooling makes the network size-agnostic.
    """
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes=num_classes, mean=mean, std=std)


@register("model", "preact-resnet18")
def preact_resnet18(
    *,
    num_classes: int,
    img_size: int = 32,
    mean: tuple[float, ...] = (0.5, 0.5, 0.5),
    std: tuple[float, ...] = (0.25, 0.25, 0.25),
) -> ResNet:
    """Pre-activation ResNet-18 (1603.05027), BackdoorBench's victim: 11,171,146 params for 10 classes, 0.56 GMACs at 32×32.

    ``img_size`` is part of the common builder signature; global pooling makes the network size-agnostic.
    """
    return ResNet(PreActBlock, (2, 2, 2, 2), num_classes=num_classes, mean=mean, std=std)

# The CIFAR recipe (kuangliu/pytorch-cifar, BackdoorBench: SGD lr 0.1 / 0.01, wd 5e-4, cosine) as one short cycle:
# at ~25-45 images/s on 2 cores, 10 minutes hold two epochs of shapes.
add_recipe(Recipe("sgd", lr=0.1, weight_decay=5e-4, schedule="triangle", warmup=0.2, train_images=20_000,
                  source="CIFAR ResNet recipe (SGD 0.1, wd 5e-4) as a one-cycle run of 20k images"),
           "resnet18", "preact-resnet18")
