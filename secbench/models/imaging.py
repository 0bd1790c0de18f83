"""Image-to-image networks for the watermark scenario: embedder H, extractor R, discriminator D, surrogates.

Every network takes ``(N, C_in, H, W)`` floats in [0, 1]; the generators return ``(N, C_out, H, W)``
and the discriminator a patch map ``(N, 1, H/16, W/16)``. Each has a ``width`` (base channels) so that
``quick`` can train small nets on CPU and ``paper`` can use the official widths. The designs follow
Zhang et al.'s official code (``ZJZAC/Deep-Model-Watermarking``, see
``shared/reference/watermarking.md`` §A1 "Networks" and "Surrogate attack setup"):

- :class:`UNet`: the pix2pix ``UnetGenerator`` (official H: ``depth=7``, ``width=64`` at 256×256).
- :class:`DilatedResidualExtractor`: ``HidingRes``, the official R (``width=128``).
- :class:`ResNetGenerator`: the pix2pix/DeblurGAN ``resnet_9blocks`` generator (the default surrogate).
- :class:`PatchDiscriminator`: the official D, trained with LSGAN.

Side constraints: UNet needs H, W multiples of ``2 ** depth``, ResNetGenerator multiples of 4, the
extractor multiples of 2 and the discriminator multiples of 16 (for an exact ``H/16``).

These are not classifiers, so they are not registered as kind ``"model"`` (whose tests expect class
logits); the scenario picks its attacker's surrogate from :data:`IMAGE_MODELS`.

Normalisation: BatchNorm is offered for fidelity to pix2pix, but the measured CPU budget
(watermarking.md, "CPU budget") shows it breaks the extractor at evaluation: its running statistics mix
watermarked and clean batches. InstanceNorm and GroupNorm keep no running statistics, so train- and
eval-mode outputs agree. Convolutions followed by a norm have no bias (the norm's affine shift replaces
it); the official code keeps some of those redundant biases, so official parameter counts are slightly
higher (``HidingRes``: ``2 * width`` more).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Literal

import torch
from torch import nn

from secbench.errors import SecbenchError

__all__ = [
    "IMAGE_MODELS",
    "DilatedResidualExtractor",
    "PatchDiscriminator",
    "ResNetGenerator",
    "ResidualBlock",
    "UNet",
    "conv_norm_act",
]

Norm = Literal["batch", "instance", "group", "none"]
Act = Literal["relu", "lrelu", "sigmoid", "none"]
PaddingMode = Literal["zeros", "reflect"]

_GROUPS = 8  # GroupNorm groups (fewer when the channel count is not a multiple of 8)


def _norm(norm: Norm, channels: int) -> list[nn.Module]:
    if norm == "batch":
        return [nn.BatchNorm2d(channels)]
    if norm == "instance":
        # affine=True as in HidingRes; torch's default (no running stats) keeps eval == train.
        return [nn.InstanceNorm2d(channels, affine=True)]
    if norm == "group":
        return [nn.GroupNorm(math.gcd(_GROUPS, channels), channels)]
    if norm == "none":
        return []
    raise SecbenchError(f"unknown norm {norm!r}; expected batch, instance, group or none")


def _act(act: Act) -> list[nn.Module]:
    if act == "relu":
        return [nn.ReLU(inplace=True)]
    if act == "lrelu":
        return [nn.LeakyReLU(0.2, inplace=True)]  # the slope pix2pix and the official D use
    if act == "sigmoid":
        return [nn.Sigmoid()]
    if act == "none":
        return []
    raise SecbenchError(f"unknown activation {act!r}; expected relu, lrelu, sigmoid or none")


def conv_norm_act(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    stride: int = 1,
    dilation: int = 1,
    norm: Norm = "instance",
    act: Act = "relu",
    transposed: bool = False,
    padding_mode: PaddingMode = "zeros",
) -> nn.Sequential:
    """``conv → norm → act``, "same" padding: ``(N, C_in, H, W)`` → ``(N, C_out, H/stride, W/stride)``.

    ``transposed`` makes it an upsampling ``ConvTranspose2d``: ``H, W`` → ``H·stride, W·stride``.
    Padding is ``dilation·(k−1)//2`` (1 for the pix2pix 4×4 stride-2 convs).
    """
    padding = dilation * (kernel_size - 1) // 2
    bias = norm == "none"  # a following norm's shift makes a conv bias redundant
    conv: nn.Module
    if transposed:
        conv = nn.ConvTranspose2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            output_padding=stride + 2 * padding - kernel_size,  # makes the output exactly stride × input
            bias=bias,
        )
    else:
        conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            bias=bias,
            padding_mode=padding_mode,
        )
    return nn.Sequential(conv, *_norm(norm, out_channels), *_act(act))


class ResidualBlock(nn.Module):
    """``x + norm(conv(relu(norm(conv(x)))))`` with 3×3 convs, optionally dilated: shape-preserving.

    ``final_relu`` applies a ReLU after the sum, as in HidingRes (CEILNet/GCANet style); the pix2pix
    ResNet block has none.
    """

    def __init__(
        self,
        channels: int,
        *,
        dilation: int = 1,
        norm: Norm = "instance",
        padding_mode: PaddingMode = "zeros",
        final_relu: bool = False,
    ) -> None:
        super().__init__()
        conv = partial(
            conv_norm_act, channels, channels, 3, dilation=dilation, norm=norm, padding_mode=padding_mode
        )
        self.body = nn.Sequential(conv(act="relu"), conv(act="none"))
        self.final_act = nn.ReLU(inplace=True) if final_relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_act(x + self.body(x))


class UNet(nn.Module):
    """pix2pix ``UnetGenerator``: ``depth`` 4×4 stride-2 downs, mirrored transposed-conv ups, skips.

    Encoder level ``i`` has ``width · 2**min(i, 3)`` channels (pix2pix caps at 8× width). As in
    pix2pix, the outermost and innermost downs have no norm (the innermost map may be 1×1, where a
    per-sample norm is undefined), downs use LeakyReLU 0.2 and ups ReLU; each up after the innermost
    takes the concatenation of the previous up and the matching encoder feature.

    Args:
        in_channels, out_channels: e.g. 6 → 3 for H (output image ⊕ watermark → watermarked output).
        width: base channels (64 in H; 16 is ~10× cheaper than 64 on CPU).
        depth: number of downsamplings (7 in H at 256×256; 4 suits 32×32 and 64×64 patches).
        norm: ``instance`` or ``group`` for eval == train; ``batch`` as in the official H.
        out_act: ``sigmoid`` keeps the output in [0, 1] (the official H); ``none`` gives raw values.

    Shape: ``(N, in_channels, H, W)`` in [0, 1], ``H, W`` multiples of ``2 ** depth`` →
    ``(N, out_channels, H, W)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        width: int = 64,
        depth: int = 4,
        norm: Norm = "batch",
        out_act: Literal["sigmoid", "none"] = "sigmoid",
    ) -> None:
        super().__init__()
        if depth < 1:
            raise SecbenchError(f"UNet depth must be >= 1, got {depth}")
        self.depth = depth
        chans = [width * 2 ** min(i, 3) for i in range(depth)]
        down = partial(conv_norm_act, kernel_size=4, stride=2, act="lrelu")
        self.downs = nn.ModuleList(
            down(c_in, c_out, norm="none" if i in (0, depth - 1) else norm)
            for i, (c_in, c_out) in enumerate(zip([in_channels, *chans[:-1]], chans, strict=True))
        )
        up = partial(conv_norm_act, kernel_size=4, stride=2, transposed=True)
        self.ups = nn.ModuleList(
            up(chans[i] if i == depth - 1 else 2 * chans[i], chans[i - 1], norm=norm, act="relu")
            if i > 0
            else up(chans[0] if depth == 1 else 2 * chans[0], out_channels, norm="none", act=out_act)
            for i in reversed(range(depth))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        step = 2**self.depth
        if x.shape[-2] % step or x.shape[-1] % step:
            raise SecbenchError(
                f"UNet(depth={self.depth}) needs H, W multiples of {step}, got {tuple(x.shape[-2:])}"
            )
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        y = skips.pop()  # the innermost feature feeds the first up directly
        for up in self.ups:
            y = up(y)
            if skips:
                y = torch.cat([skips.pop(), y], dim=1)
        return y


class DilatedResidualExtractor(nn.Module):
    """The official extractor R (``HidingRes``), a CEILNet-style dilated residual network.

    Three 3×3 ``conv → InstanceNorm → ReLU`` at ``width`` (the third stride 2), one residual block per
    entry of ``dilations`` (3×3 convs, ReLU after the sum), a 4×4 transposed-conv ×2 upsample and a 3×3
    conv (both ``→ InstanceNorm → ReLU``), then a 1×1 conv to ``out_channels`` and ``out_act``.

    ``out_act="relu"`` is the official R: outputs are ≥ 0 but unbounded above. With the official blank
    target (an all-ones image, ``secret/clean.png``) R must output exactly 1 for clean images, which a
    ReLU allows (a sigmoid could only approach it); a zero blank instead sits on the ReLU's dead side,
    where the gradient vanishes, so pick the blank value with the activation. ``out_act="sigmoid"``
    turns it into the CEILNet-like generator used as the ``dilated`` surrogate (outputs in [0, 1]).

    Shape: ``(N, in_channels, H, W)`` in [0, 1], ``H, W`` even → ``(N, out_channels, H, W)``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        *,
        width: int = 128,
        dilations: tuple[int, ...] = (2, 2, 2, 2, 4, 4, 4, 4, 1),
        out_act: Literal["relu", "sigmoid", "none"] = "relu",
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(
            conv_norm_act(in_channels, width, 3),
            conv_norm_act(width, width, 3),
            conv_norm_act(width, width, 3, stride=2),
            *(ResidualBlock(width, dilation=d, final_relu=True) for d in dilations),
            conv_norm_act(width, width, 4, stride=2, transposed=True),
            conv_norm_act(width, width, 3),
            conv_norm_act(width, out_channels, 1, norm="none", act=out_act),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ResNetGenerator(nn.Module):
    """pix2pix/DeblurGAN ``resnet_9blocks`` generator, the default surrogate of the official attack.

    7×7 reflect-padded ``conv → norm → ReLU`` at ``width``, two 3×3 stride-2 downs (2×, 4× width),
    ``n_blocks`` residual blocks at 4× width (reflect padding, no ReLU after the sum), two 3×3
    transposed-conv ups, and a 7×7 reflect-padded conv to ``out_channels`` followed by ``out_act``
    (pix2pix ends with tanh for [-1, 1] images; sigmoid is its [0, 1] counterpart).

    Shape: ``(N, in_channels, H, W)`` in [0, 1], ``H, W`` multiples of 4 → ``(N, out_channels, H, W)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        width: int = 64,
        n_blocks: int = 9,
        norm: Norm = "instance",
        out_act: Literal["sigmoid", "none"] = "sigmoid",
    ) -> None:
        super().__init__()
        w2, w4 = 2 * width, 4 * width
        self.net = nn.Sequential(
            conv_norm_act(in_channels, width, 7, norm=norm, padding_mode="reflect"),
            conv_norm_act(width, w2, 3, stride=2, norm=norm),
            conv_norm_act(w2, w4, 3, stride=2, norm=norm),
            *(ResidualBlock(w4, norm=norm, padding_mode="reflect") for _ in range(n_blocks)),
            conv_norm_act(w4, w2, 3, stride=2, norm=norm, transposed=True),
            conv_norm_act(w2, width, 3, stride=2, norm=norm, transposed=True),
            conv_norm_act(width, out_channels, 7, norm="none", act=out_act, padding_mode="reflect"),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PatchDiscriminator(nn.Module):
    """The official D: four 3×3 stride-2 ``conv → norm → LeakyReLU(0.2)`` blocks (width 1×, 2×, 4×, 8×;
    no norm on the first), then a 3×3 conv to a 1-channel patch map of raw scores (for LSGAN).

    Shape: ``(N, in_channels, H, W)`` in [0, 1], ``H, W`` multiples of 16 → ``(N, 1, H/16, W/16)``.
    """

    def __init__(self, in_channels: int = 3, *, width: int = 64, norm: Norm = "instance") -> None:
        super().__init__()
        chans = [width * 2**i for i in range(4)]
        self.net = nn.Sequential(
            *(
                conv_norm_act(c_in, c_out, 3, stride=2, norm="none" if i == 0 else norm, act="lrelu")
                for i, (c_in, c_out) in enumerate(zip([in_channels, *chans[:-1]], chans, strict=True))
            ),
            conv_norm_act(chans[-1], 1, 3, norm="none", act="none"),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


ImageModelBuilder = Callable[..., nn.Module]
"""``(in_channels, out_channels, *, width) -> nn.Module`` mapping [0, 1] images to [0, 1] images."""

IMAGE_MODELS: dict[str, ImageModelBuilder] = {
    # InstanceNorm throughout: no running statistics to go stale between train and eval.
    "unet": partial(UNet, norm="instance"),
    "resnet9": partial(ResNetGenerator, n_blocks=9),
    # CEILNet-like dilated residual generator: R's architecture with a sigmoid output instead of ReLU.
    "dilated": partial(DilatedResidualExtractor, out_act="sigmoid"),
}
"""Surrogate architectures for the theft attack, by name (``--surrogate``)."""
