"""Dynamic Head: the attention block that refines an FPN feature pyramid for detection heads.

Xiyang Dai et al., "Dynamic Head: Unifying Object Detection Heads with Attentions", CVPR 2021,
arXiv 2106.08322; official code ``microsoft/DynamicHead`` (MIT), re-implemented here from the
description in ``shared/reference/architectures.md`` §4, not copied.

One block applies three attentions to every pyramid level ``l``, in the official code's order
(spatial → scale → task; the paper writes scale → spatial → task):

* **spatial-aware** (π_S): a 3×3 conv on level ``l`` predicts, per position, offsets and a modulation
  mask for K = 9 sampling points; these same offsets and mask drive three modulated deformable 3×3
  convs (DCNv2, each followed by GroupNorm(16)): one on level ``l``, a stride-2 one on the finer
  level ``l-1`` and one on the coarser level ``l+1``;
* **scale-aware** (π_L): each of those (up to three) terms is weighted by a per-sample scalar,
  ``hard_sigmoid(relu(conv1x1(global_avg_pool(term))))``, and the terms are averaged. As in the code,
  not the paper, the ReLU sits before the hard sigmoid ``relu6(x + 3) / 6``, so the weights lie in [0.5, 1];
* **task-aware** (π_C): dynamic ReLU (DyReLU-B): ``max(a1·x + b1, a2·x + b2)`` with the four per-channel
  coefficients predicted from the globally pooled features (C → C/4 → 4C, hard sigmoid) around
  ``a1 = 1, a2 = b1 = b2 = 0``.

Parameters per block at C = 256: 1,917,276, exactly the official count (DCN with bias, as there);
the stack of 6 used in every released config: 11,503,656.

Deviations from the official code, on purpose:

* **Coarser level: upsample, then the deformable conv** (the official code runs the DCN on level
  ``l+1`` and upsamples its output). The official order feeds offsets computed at level ``l``'s
  resolution to a conv whose output is half that size; its CUDA kernel does not check shapes and
  indexes the offset buffer with the smaller shape, so those offsets land on the wrong positions
  (microsoft/DynamicHead#25, mmdet#11146). ``torchvision.ops.deform_conv2d`` rejects that shape
  mismatch, so one of the two sides has to be resized. Upsampling the features (bilinear,
  ``align_corners=True``, the official upsampling) keeps what the paper describes: the levels are
  resized to the median level's scale and sampled at the same K learned positions with the same
  modulation; it adds no parameters. The price is compute: that DCN now runs at level ``l``'s
  resolution, 4× its official cost. Counted in units of one DCN over the finest level, a 5-level
  pyramid's DCNs cost 2.99 instead of 2.00 (+50%; +33% on middle levels, +60% on the finest, which
  dominates because it has no finer neighbour). The alternative, downsampling the offsets, would
  need a pooling and a rescaling of offset units that neither the paper nor the code defines.
* **Offset conv starts at zero** (as in the DCNv2 paper and mmdetection; the official code keeps
  PyTorch's default init), so a fresh block samples the plain 3×3 grid with mask 0.5 instead of
  random offsets. The other inits follow the official code.
* The pyramid is a list of ``(N, C, H_l, W_l)`` tensors, finest first, instead of detectron2's dict; each
  level must be the size a stride-2, padding-1 conv makes of the one before (``ceil(H/2)``, ``ceil(W/2)``),
  which is what FPNs produce and what the stride-2 DCN needs to meet level ``l``'s offsets.

Off CUDA the deformable conv is :func:`modulated_deform_conv2d`'s ``grid_sample`` + matmul form, the same
operator as ``torchvision.ops.deform_conv2d`` (equal to 1e-13 in float64, forward and every gradient) and
about 6× faster to train on CPU, where torchvision's backward kernel took three quarters of a DyHead
detector's step (``benchmarks/dyhead_dcn.py``). On CUDA torchvision's kernel runs: it does not hold the
K-times-larger sampled tensor that the ``grid_sample`` form needs for the backward pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import deform_conv2d

__all__ = ["DyHead", "DyHeadBlock", "DyReLU", "ModulatedDeformConvGN", "ScaleAttention", "dyhead_block",
           "modulated_deform_conv2d"]

_KERNEL_POINTS = 9  # K: sampling points of a 3×3 deformable conv
_GN_GROUPS = 16


def modulated_deform_conv2d(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor,
                            bias: torch.Tensor, stride: int = 1, padding: int = 1) -> torch.Tensor:
    """DCNv2 (one offset group, dilation 1): ``torchvision.ops.deform_conv2d(x, offset, weight, bias, stride,
    padding, mask=mask)``, computed off CUDA as bilinear ``grid_sample`` of the K points, then one matmul.

    Shapes: ``x (N, C, H, W)``, ``offset (N, 2K, H_o, W_o)`` as ``(dy, dx)`` per kernel point in input pixels,
    ``mask (N, K, H_o, W_o)``, ``weight (O, C, kh, kw)`` with ``K = kh·kw`` → ``(N, O, H_o, W_o)``. Points
    outside the input read zeros, as torchvision's bilinear interpolation does.
    """
    if x.is_cuda:
        return deform_conv2d(x, offset, weight, bias, stride=stride, padding=padding, mask=mask)
    n, c, h, w = x.shape
    out_ch, _, kh, kw = weight.shape
    k = kh * kw
    ho, wo = offset.shape[-2:]
    ky, kx = torch.meshgrid(torch.arange(kh, dtype=x.dtype), torch.arange(kw, dtype=x.dtype), indexing="ij")
    deltas = offset.view(n, k, 2, ho, wo)
    rows = (torch.arange(ho, dtype=x.dtype) * stride - padding)[:, None] + ky.reshape(k, 1, 1) + deltas[:, :, 0]
    cols = (torch.arange(wo, dtype=x.dtype) * stride - padding)[None, :] + kx.reshape(k, 1, 1) + deltas[:, :, 1]
    # grid_sample's (x, y) in [-1, 1]; with align_corners=False pixel p sits at (2p + 1) / size - 1, 1-pixel maps too
    grid = torch.stack(((2 * cols + 1) / w - 1, (2 * rows + 1) / h - 1), dim=-1).view(n, k * ho, wo, 2)
    sampled = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    sampled = sampled.view(n, c, k, ho, wo) * mask.view(n, 1, k, ho, wo)
    out = torch.matmul(weight.reshape(out_ch, c * k), sampled.view(n, c * k, ho * wo))
    return out.view(n, out_ch, ho, wo) + bias.view(1, out_ch, 1, 1)


class ModulatedDeformConvGN(nn.Module):
    """Modulated deformable 3×3 conv (DCNv2, padding 1, with bias) followed by GroupNorm(16).

    Shape: ``x (N, C, H, W)``, ``offset (N, 2K, H_o, W_o)``, ``mask (N, K, H_o, W_o)`` → ``(N, C, H_o, W_o)``
    with ``H_o = ceil(H / stride)``; offsets are ``(dy, dx)`` pairs per kernel point, in input pixels.
    """

    def __init__(self, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.weight = nn.Parameter(torch.empty(channels, channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(channels))
        bound = 1.0 / math.sqrt(channels * 9)  # the official DCN's init: uniform ±1/sqrt(fan_in), zero bias
        nn.init.uniform_(self.weight, -bound, bound)
        self.norm = nn.GroupNorm(_GN_GROUPS, channels)

    def forward(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = modulated_deform_conv2d(x, offset, mask, self.weight, self.bias, stride=self.stride)
        return self.norm(out)


class ScaleAttention(nn.Module):
    """π_L's per-term weight ``hard_sigmoid(relu(conv1x1(GAP(x))))``: ``(N, C, H, W)`` → ``(N, 1, 1, 1)`` in [0.5, 1]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(channels, 1, kernel_size=1)
        nn.init.normal_(self.fc.weight, 0.0, 0.01)  # official init: every weight starts near 0.5
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardsigmoid(F.relu(self.fc(self.pool(x))))


class DyReLU(nn.Module):
    """π_C, dynamic ReLU (DyReLU-B, two pieces with bias): ``(N, C, H, W)`` → ``(N, C, H, W)``.

    ``max(a1·x + b1, a2·x + b2)`` with per-sample, per-channel coefficients from the pooled input. The
    hard sigmoid's output ``h`` in [0, 1] is centred and scaled as ``a1 = 2(h - 0.5) + 1``,
    ``a2 = 2(h - 0.5)``, ``b = h - 0.5``, so at ``h = 0.5`` the unit is a plain ReLU. The hidden width is
    ``C / reduction``; the official code rounds it to a multiple of 4, which changes nothing for the
    multiples of 16 that the block's GroupNorm allows.
    """

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction),
            nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, 4 * channels),
            nn.Hardsigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coeffs = self.fc(x.mean(dim=(2, 3)))[:, :, None, None] - 0.5
        a1, b1, a2, b2 = coeffs.chunk(4, dim=1)  # the official layout, so its weights would map one-to-one
        return torch.maximum(x * (2 * a1 + 1) + b1, x * (2 * a2) + b2)


def _check_pyramid(features: Sequence[torch.Tensor], channels: int) -> None:
    """Raise ``ValueError`` unless ``features`` is a non-empty, finest-first pyramid the block can refine."""
    if not features:
        raise ValueError("DyHead needs at least one pyramid level")
    batch = features[0].shape[0]
    for level, x in enumerate(features):
        if x.dim() != 4 or x.shape[0] != batch or x.shape[1] != channels:
            raise ValueError(
                f"level {level}: expected shape ({batch}, {channels}, H, W), got {tuple(x.shape)}"
            )
    for level, (finer, x) in enumerate(zip(features[:-1], features[1:], strict=True), start=1):
        expected = tuple(math.ceil(s / 2) for s in finer.shape[-2:])
        if tuple(x.shape[-2:]) != expected:
            raise ValueError(
                f"level {level} is {tuple(x.shape[-2:])}, but the stride-2 conv from level {level - 1} "
                f"{tuple(finer.shape[-2:])} gives {expected}: each level must be ceil(H/2) x ceil(W/2) of the previous"
            )


class DyHeadBlock(nn.Module):
    """One DyHead block: spatial-, scale- and task-aware attention over a feature pyramid.

    Shape: a list of L levels ``(N, C, H_l, W_l)``, finest first, with ``H_{l+1} = ceil(H_l / 2)`` (same
    for W) → a list of L tensors of the same shapes. Any L ≥ 1 works; a level without a finer or coarser
    neighbour averages fewer terms.
    """

    def __init__(self, channels: int = 256) -> None:
        super().__init__()
        if channels <= 0 or channels % _GN_GROUPS:
            raise ValueError(
                f"channels must be a positive multiple of {_GN_GROUPS} (GroupNorm), got {channels}"
            )
        self.channels = channels
        # 2K offsets then K mask logits per position, the official channel layout
        self.offset = nn.Conv2d(channels, 3 * _KERNEL_POINTS, kernel_size=3, padding=1)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        self.dcn_same = ModulatedDeformConvGN(channels)
        self.dcn_finer = ModulatedDeformConvGN(channels, stride=2)  # level l-1 down to level l's grid
        self.dcn_coarser = ModulatedDeformConvGN(channels)  # level l+1, upsampled to level l first
        self.scale_attention = ScaleAttention(channels)
        self.task_attention = DyReLU(channels)

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        _check_pyramid(features, self.channels)
        out = []
        for level, x in enumerate(features):
            offset_mask = self.offset(x)
            offset = offset_mask[:, : 2 * _KERNEL_POINTS]
            mask = offset_mask[:, 2 * _KERNEL_POINTS :].sigmoid()
            terms = [self.dcn_same(x, offset, mask)]
            if level > 0:
                terms.append(self.dcn_finer(features[level - 1], offset, mask))
            if level < len(features) - 1:
                # Upsample before the DCN so that level l's offsets match the conv's output grid (see module doc).
                coarser = F.interpolate(
                    features[level + 1], size=x.shape[-2:], mode="bilinear", align_corners=True
                )
                terms.append(self.dcn_coarser(coarser, offset, mask))
            weights = torch.stack([self.scale_attention(t) for t in terms])  # (T, N, 1, 1, 1)
            fused = (torch.stack(terms) * weights).mean(dim=0)
            out.append(self.task_attention(fused))
        return out


def dyhead_block(channels: int = 256) -> DyHeadBlock:
    """One DyHead block (1,917,276 parameters at the official 256 channels)."""
    return DyHeadBlock(channels)


class DyHead(nn.Module):
    """A stack of ``num_blocks`` DyHead blocks (6 × 256 channels, 11,503,656 parameters, in every official config).

    Shape: a list of L levels ``(N, C, H_l, W_l)``, finest first → a list of L tensors of the same shapes,
    ready for any dense detection head (ATSS, RetinaNet, FCOS towers or an RPN).
    """

    def __init__(self, num_blocks: int = 6, channels: int = 256) -> None:
        super().__init__()
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be at least 1, got {num_blocks}")
        self.blocks = nn.Sequential(*(DyHeadBlock(channels) for _ in range(num_blocks)))

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return self.blocks(list(features))
