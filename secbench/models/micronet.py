"""MicroNet M0-M3: micro-factorized convolutions and Dynamic Shift-Max at 4-21M MAdds.

Y. Li et al., "MicroNet: Improving Image Recognition with Extremely Low FLOPs", ICCV 2021, arXiv 2108.05894;
code liyunsheng13/micronet (MIT). This is the family the official code and weights implement (M0/M1/M2/M3
at 4/6/12/21M MAdds). The 2020 preprint arXiv 2011.12289 ("Towards ...") describes a different, larger
family that is not rebuilt here. Written from the description in the secbench reference
(architectures.md §1), not from the official source.

Operators:

- Micro-factorized pointwise conv: a dense 1×1 conv becomes a grouped 1×1 conv, a channel shuffle and
  another grouped 1×1 conv (P·Φ·Qᵀ). In a network the pair straddles blocks: the compressing grouped 1×1
  at the end of one block, a shuffle, the expanding grouped 1×1 at the start of the next.
- Micro-factorized depthwise conv: k×k depthwise becomes k×1 then 1×k depthwise (stride split as (s, 1)
  and (1, s)); the k×1 conv may multiply the channels (block A).
- Dynamic Shift-Max (DSM): ``y = max_k (a_k·x + b_k·x₂)`` over K = 1 or 2 fusions, where ``x₂`` is ``x``
  circularly shifted by one channel group and one channel within the group, and the 2K coefficients per
  channel come from a hyper-network on the globally pooled input.
- Blocks: A (depthwise first, for the early high-resolution stages), B/C (grouped 1×1 → depthwise →
  grouped 1×1), and a final expanding grouped 1×1. Stem: a 3×1 then 1×3 conv (stride 2 overall). Head:
  ReLU6 → global pool → h-swish → Linear+BN1d+h-swish → dropout → Linear+BN1d+h-swish.

At 1000 classes and 224×224 the parameter counts equal the official model's exactly (1,019,590 /
1,777,587 / 2,393,876 / 2,622,960), and ``secbench.models.flops.count_macs`` (conv + linear) gives the
official 3.45 / 5.31 / 10.34 / 18.24M; the papers' 4 / 6 / 12 / 21M add DSM's elementwise products.

What differs from the official code, and why:

- Channel permutations: the reference lists a shuffle after every activation of a block but not all
  their group counts. Kept here are the shuffles the micro-factorization needs: after the first
  activation of a block (one group per input channel in block A, ``g1`` groups in block C) and after the
  compressing 1×1 (``g3`` groups), so that every group of a grouped 1×1 sees every group of the previous
  one. Permutations have no parameters or MACs, so the counts are unaffected; the network simply is not
  weight-compatible with the official checkpoints (which secbench never loads).
- DSM shift groups are not extra config columns: they follow the preceding grouped operator (one group
  per input channel after block A's depthwise conv, ``g1`` after the expanding 1×1, ``hidden / g1``
  after block C's depthwise conv, ``g3`` after the compressing 1×1), so ``x₂`` always comes from another
  group and DSM adds the cross-group connections the grouped convs lack.
- Any input size works: the official model asserts ``img_size % 32 == 0``; here every strided conv pads
  (output ``ceil(H / s)``) and pooling is global. For inputs up to 64 px the stem has stride 1 instead of 2,
  as ``mobilenet-v3-small``'s (otherwise a 32×32 input reaches 1×1 at the fourth stride-2 stage): params
  unchanged, 4× the MACs of the ImageNet stem at the same input (``secbench models --size 32``).
- ``classifier`` is :class:`SwishLinear`, an ``nn.Linear`` that also applies the official head's BN1d and
  h-swish to the logits. This keeps the exact parameter count and ``forward == classifier(features(x))``.
  Consequences of the official head: logits are bounded below by -3/8 (h-swish), a logit whose BN output
  is below -3 gets no gradient, and train mode needs batches of at least 2 (BN1d).
- Init (not given in the reference): He-normal (fan-out) convs and N(0, 0.01) linears with zero bias, so
  every DSM hyper-network starts near 0.5 and thus every DSM near its initial coefficients.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from secbench.models.card import ModelCard, add_card
from secbench.models.layers import ConvClassifier, stem_stride
from secbench.models.recipe import Recipe, add_recipe
from secbench.registry import register

__all__ = [
    "VARIANTS",
    "ChannelShuffle",
    "DynamicShiftMax",
    "MicroBlock",
    "MicroNet",
    "Row",
    "SwishLinear",
    "Variant",
    "micronet_m0",
    "micronet_m1",
    "micronet_m2",
    "micronet_m3",
]

REDUCTION = 8  # DSM hyper-network squeeze: channels // (REDUCTION · row.ratio)
COEFF_RANGE = 4.0  # DSM coefficients: (h_sigmoid - 0.5) · 4 ∈ [-2, 2] around their offsets (ACT_MAX = 2)


class Row(NamedTuple):
    """One block of a variant, the official config row less its shift-group columns (see module docstring).

    ``g1 == 0`` makes a block A (depthwise expands by ``c1·c2``), ``g3 == 0`` the final expanding 1×1
    (``out == in·c1·c2``), anything else a block C (1×1 expands by ``c1·c2``). ``y1, y2, y3`` are the
    activations after the first 1×1, the depthwise conv and the compressing 1×1: 0 = ReLU6 (none for
    ``y3``), otherwise DSM with K = y (``y3`` DSMs always use K = 1). ``ratio`` scales the DSM reduction.
    """

    stride: int
    out: int
    kernel: int
    c1: int
    c2: int
    g1: int
    g3: int
    y1: int
    y2: int
    y3: int
    ratio: int


class Variant(NamedTuple):
    stem: tuple[int, int]  # (a, b): the stem maps 3 → a → a·b channels
    rows: tuple[Row, ...]
    head: int  # width D of the hidden head layer, i.e. of ``features``
    dropout: float
    init_k2: tuple[float, float]  # initial (a2, b2) of K=2 DSMs; (a1, b1) always start at (1, 0)
    card: ModelCard


def _rows(*rows: tuple[int, ...]) -> tuple[Row, ...]:
    return tuple(Row(*row) for row in rows)


# Architecture numbers from the reference (§1.4) and the official eval scripts; the DSM ratios are the
# ones for which the parameter counts equal the official model's.
VARIANTS: dict[str, Variant] = {
    "m0": Variant(
        stem=(2, 2),
        #      s, out, k, c1, c2, g1, g3, y1, y2, y3, r
        rows=_rows(
            (2, 8, 3, 2, 2, 0, 2, 0, 0, 1, 1),
            (2, 12, 3, 2, 2, 0, 4, 0, 2, 1, 1),
            (2, 16, 5, 2, 2, 0, 4, 0, 2, 1, 1),
            (1, 32, 5, 1, 4, 4, 4, 2, 2, 1, 1),
            (2, 64, 5, 1, 4, 8, 8, 2, 2, 1, 1),
            (1, 96, 3, 1, 4, 8, 8, 2, 2, 1, 2),
            (1, 384, 3, 1, 4, 12, 0, 2, 2, 1, 2),
        ),
        head=640,
        dropout=0.05,
        init_k2=(1.0, 0.0),
        card=ModelCard("micronet-m0", "2108.05894", 1_019_590, 3_448_880, 1.0, 4.0, 46.6),
    ),
    "m1": Variant(
        stem=(3, 2),
        rows=_rows(
            (2, 8, 3, 2, 2, 0, 2, 0, 0, 1, 1),
            (2, 16, 3, 2, 2, 0, 4, 0, 2, 1, 1),
            (2, 16, 5, 2, 2, 0, 4, 0, 2, 1, 1),
            (1, 32, 5, 1, 6, 4, 4, 2, 2, 1, 1),
            (2, 64, 5, 1, 6, 8, 8, 2, 2, 1, 1),
            (1, 96, 3, 1, 6, 8, 8, 2, 2, 1, 2),
            (1, 576, 3, 1, 6, 12, 0, 2, 2, 1, 2),
        ),
        head=960,
        dropout=0.05,
        init_k2=(1.0, 0.0),
        card=ModelCard("micronet-m1", "2108.05894", 1_777_587, 5_314_080, 1.8, 6.0, 51.4),
    ),
    "m2": Variant(
        stem=(4, 2),
        rows=_rows(
            (2, 12, 3, 2, 2, 0, 4, 0, 0, 1, 1),
            (2, 16, 3, 2, 2, 0, 4, 0, 2, 1, 1),
            (1, 24, 3, 2, 2, 0, 4, 0, 2, 1, 1),
            (2, 32, 5, 1, 6, 6, 4, 2, 2, 1, 1),
            (1, 32, 5, 1, 6, 8, 4, 2, 2, 1, 2),
            (1, 64, 5, 1, 6, 8, 8, 2, 2, 1, 2),
            (2, 96, 5, 1, 6, 8, 8, 2, 2, 1, 2),
            (1, 128, 3, 1, 6, 12, 8, 2, 2, 1, 2),
            (1, 768, 3, 1, 6, 16, 0, 2, 2, 1, 2),
        ),
        head=1024,
        dropout=0.1,
        init_k2=(1.0, 0.0),
        card=ModelCard("micronet-m2", "2108.05894", 2_393_876, 10_338_128, 2.4, 12.0, 59.4),
    ),
    "m3": Variant(
        stem=(4, 3),
        rows=_rows(
            (2, 16, 3, 2, 2, 0, 4, 0, 2, 0, 1),
            (2, 24, 3, 2, 2, 0, 4, 0, 2, 0, 1),
            (1, 24, 3, 2, 2, 0, 4, 0, 2, 0, 1),
            (2, 32, 5, 1, 6, 6, 4, 0, 2, 0, 1),
            (1, 32, 5, 1, 6, 8, 4, 0, 2, 0, 2),
            (1, 64, 5, 1, 6, 8, 8, 0, 2, 0, 2),
            (1, 80, 5, 1, 6, 8, 8, 0, 2, 0, 2),
            (1, 80, 5, 1, 6, 10, 8, 0, 2, 0, 2),
            (2, 120, 5, 1, 6, 10, 10, 0, 2, 0, 2),
            (1, 120, 5, 1, 6, 12, 10, 0, 2, 0, 2),
            (1, 144, 3, 1, 6, 12, 12, 0, 2, 0, 2),
            (1, 864, 3, 1, 6, 12, 0, 0, 2, 0, 2),
        ),
        head=1024,
        dropout=0.1,
        init_k2=(0.5, 0.5),
        card=ModelCard("micronet-m3", "2108.05894", 2_622_960, 18_236_000, 2.6, 21.0, 62.5),
    ),
}
for _variant in VARIANTS.values():
    add_card(_variant.card)


def _spatial_sep_conv(
    in_ch: int, mid_ch: int, out_ch: int, kernel: int, stride: int, *, groups: int
) -> nn.Sequential:
    """k×k conv as a k×1 conv (``groups`` groups, ``in_ch → mid_ch``) then a 1×k depthwise-style conv
    (``groups=mid_ch``, ``mid_ch → out_ch``), each followed by BN; the stride is split as (s, 1), (1, s).

    Shape: ``(N, in_ch, H, W)`` → ``(N, out_ch, ceil(H / s), ceil(W / s))``.
    """
    pad = kernel // 2
    return nn.Sequential(
        nn.Conv2d(in_ch, mid_ch, (kernel, 1), (stride, 1), (pad, 0), groups=groups, bias=False),
        nn.BatchNorm2d(mid_ch),
        nn.Conv2d(mid_ch, out_ch, (1, kernel), (1, stride), (0, pad), groups=mid_ch, bias=False),
        nn.BatchNorm2d(out_ch),
    )


def _group_pointwise(in_ch: int, out_ch: int, groups: int) -> nn.Sequential:
    """One factor of a micro-factorized 1×1 conv: grouped 1×1 (no bias, BN follows) → BN. Shape: C_in → C_out."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, groups=groups, bias=False), nn.BatchNorm2d(out_ch))


def _squeeze_width(channels: int, reduction: int) -> int:
    """``channels // reduction`` rounded to a multiple of 4, at least 4 and at most 10% below the quotient."""
    value = channels // reduction
    width = max(4, (value + 2) // 4 * 4)
    return width + 4 if width < 0.9 * value else width


class ChannelShuffle(nn.Module):
    """Interleave ``groups`` equal channel groups: channel ``g·(C/groups) + i`` moves to ``i·groups + g``.

    Shape: ``(N, C, H, W)`` → ``(N, C, H, W)``; ``C`` must be divisible by ``groups``.
    """

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(1, (self.groups, -1)).transpose(1, 2).flatten(1, 2)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class DynamicShiftMax(nn.Module):
    """Dynamic Shift-Max: ``y = max_{k<K} (a_k·x + b_k·x₂)`` with input-dependent ``a_k, b_k`` per channel.

    ``x₂`` views the ``C`` channels as ``groups`` groups of ``C / groups`` and takes, for channel
    ``(g, c)``, channel ``((g + 1) mod groups, (c + 1) mod (C / groups))``. The hyper-network
    ``GAP → Linear(C, sq) → ReLU → Linear(sq, 2K·C) → h_sigmoid`` gives ``h``; the coefficients are
    ``(h - 0.5)·4`` plus fixed offsets ``(a1, b1) = (1, 0)`` and ``(a2, b2) = init_k2``. With ``h = 0.5``
    (its value at init, up to the small initial weights) DSM is the identity for K=1 and
    ``max(x, a2·x + b2·x₂)`` for K=2.

    Args:
        channels: ``C``.
        k: number of fusions K (1 or 2).
        reduction: hyper-network squeeze ``sq = _squeeze_width(C, reduction)``.
        groups: shift groups; ``C`` must be divisible by it.
        init_k2: initial ``(a2, b2)``, used when ``k == 2``.

    Shape: ``(N, C, H, W)`` → ``(N, C, H, W)``.
    """

    offsets: torch.Tensor

    def __init__(
        self, channels: int, k: int, *, reduction: int, groups: int, init_k2: tuple[float, float] = (1.0, 0.0)
    ) -> None:
        super().__init__()
        if k not in (1, 2) or channels % groups:
            raise ValueError(
                f"DSM needs K in (1, 2) and C divisible by groups: K={k}, C={channels}, groups={groups}"
            )
        self.k, self.groups = k, groups
        squeeze = _squeeze_width(channels, reduction)
        self.hyper = nn.Sequential(
            nn.Linear(channels, squeeze),
            nn.ReLU(inplace=True),
            nn.Linear(squeeze, 2 * k * channels),
            nn.Hardsigmoid(),
        )
        # (a1, b1, a2, b2)[:2K]; a buffer so it follows .to(device), not persistent as it is a constant
        offsets = torch.tensor((1.0, 0.0, *init_k2)[: 2 * k])
        self.register_buffer("offsets", offsets.view(1, 2 * k, 1, 1, 1), persistent=False)

    def shift(self, x: torch.Tensor) -> torch.Tensor:
        """``x₂``: each channel takes the next group's next channel (both circular). Shape kept."""
        return x.unflatten(1, (self.groups, -1)).roll((-1, -1), dims=(1, 2)).flatten(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        h = self.hyper(x.mean((2, 3)))  # (N, 2K·C) in [0, 1]
        coeffs = (h - 0.5).mul(COEFF_RANGE).view(n, 2 * self.k, c, 1, 1) + self.offsets  # a1, b1, a2, b2
        # (N, K, C, H, W): fusion k is a_k·x + b_k·x₂
        fused = coeffs[:, 0::2] * x.unsqueeze(1) + coeffs[:, 1::2] * self.shift(x).unsqueeze(1)
        return fused.amax(dim=1) if self.k > 1 else fused.squeeze(1)

    def extra_repr(self) -> str:
        return f"k={self.k}, groups={self.groups}"


def _block_layers(in_ch: int, row: Row, init_k2: tuple[float, float]) -> list[nn.Module]:
    """The layers of one block (A, C or final 1×1) for ``row``; see :class:`Row`."""
    hidden = in_ch * row.c1 * row.c2
    reduction = REDUCTION * row.ratio

    def act(channels: int, y: int, groups: int) -> nn.Module:
        if not y:
            return nn.ReLU6(inplace=True)
        return DynamicShiftMax(channels, y, reduction=reduction, groups=groups, init_k2=init_k2)

    def out_act(channels: int, groups: int, dsm_reduction: int) -> nn.Module:
        # after a linear 1×1: DSM with K=1 (a dynamic linear fusion, no max) or nothing
        if not row.y3:
            return nn.Identity()
        return DynamicShiftMax(channels, 1, reduction=dsm_reduction, groups=groups)

    if row.g1 == 0:  # block A: the depthwise conv expands each input channel into c1·c2 adjacent ones
        return [
            _spatial_sep_conv(in_ch, in_ch * row.c1, hidden, row.kernel, row.stride, groups=in_ch),
            act(hidden, row.y2, in_ch),
            ChannelShuffle(in_ch),  # every group of the 1×1 below sees every input channel
            _group_pointwise(hidden, row.out, row.g3),
            out_act(row.out, row.g3, reduction // 2),  # compressing 1×1: half the reduction, wider squeeze
            ChannelShuffle(row.g3),
        ]
    if row.g3 == 0:  # final expanding 1×1
        return [_group_pointwise(in_ch, hidden, row.g1), out_act(hidden, row.g1, reduction)]
    return [  # block C
        _group_pointwise(in_ch, hidden, row.g1),
        act(hidden, row.y1, row.g1),
        ChannelShuffle(row.g1),  # each run of g1 adjacent channels now holds one channel per 1×1 group
        _spatial_sep_conv(hidden, hidden, hidden, row.kernel, row.stride, groups=hidden),
        act(hidden, row.y2, hidden // row.g1),  # shift groups of g1 channels: x₂ from the next 1×1 group
        _group_pointwise(hidden, row.out, row.g3),
        out_act(row.out, row.g3, reduction // 2 if row.out < hidden else reduction),
        ChannelShuffle(row.g3),
    ]


class MicroBlock(nn.Module):
    """One MicroNet block (A, C or the final 1×1), with an identity shortcut when stride 1 keeps the width.

    Shape: ``(N, in_ch, H, W)`` → ``(N, row.out, ceil(H / s), ceil(W / s))``.
    """

    def __init__(self, in_ch: int, row: Row, *, init_k2: tuple[float, float]) -> None:
        super().__init__()
        self.residual = row.stride == 1 and in_ch == row.out
        self.layers = nn.Sequential(*_block_layers(in_ch, row, init_k2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        return out + x if self.residual else out


class SwishLinear(nn.Linear):
    """The official head layer: ``Linear → BatchNorm1d → h-swish``, as an ``nn.Linear`` subclass.

    Shape: ``(N, in_features)`` → ``(N, out_features)``, values ≥ -3/8. Train mode needs ``N >= 2`` (BN1d).
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features)
        self.norm = nn.BatchNorm1d(out_features)
        self.act = nn.Hardswish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(super().forward(x)))


class MicroNet(ConvClassifier):
    """MicroNet (2108.05894) in the secbench surface.

    ``stages`` is the stem, one :class:`MicroBlock` per config row and, as ``last_conv``, the final 1×1
    block followed by the head's ReLU6 (its output is what gets pooled). ``pre_logits`` is
    ``h-swish → SwishLinear(C, head) → Dropout``; ``classifier`` is ``SwishLinear(head, num_classes)``,
    so ``features`` has ``D = variant.head`` (640 / 960 / 1024 / 1024 for M0-M3).

    Args:
        variant: an entry of :data:`VARIANTS`.
        num_classes: number of logits.
        mean, std: per-channel statistics for the in-model :class:`~secbench.models.layers.Normalize`.

    Shape: ``(N, 3, H, W)`` float in [0, 1], any ``H, W >= 1`` → ``(N, num_classes)`` logits.
    """

    def __init__(
        self, variant: Variant, *, num_classes: int, img_size: int, mean: tuple[float, ...], std: tuple[float, ...]
    ) -> None:
        a, b = variant.stem
        stem = nn.Sequential(
            _spatial_sep_conv(3, a, a * b, 3, stem_stride(img_size), groups=1), ChannelShuffle(a), nn.ReLU6(inplace=True)
        )
        blocks: list[nn.Module] = [stem]
        in_ch = a * b
        for row in variant.rows:
            blocks.append(MicroBlock(in_ch, row, init_k2=variant.init_k2))
            in_ch = row.out
        blocks[-1] = nn.Sequential(blocks[-1], nn.ReLU6())
        pre_logits = nn.Sequential(
            nn.Hardswish(), SwishLinear(in_ch, variant.head), nn.Dropout(variant.dropout)
        )
        super().__init__(
            nn.Sequential(*blocks),
            SwishLinear(variant.head, num_classes),
            mean=mean,
            std=std,
            pre_logits=pre_logits,
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.Linear):  # small weights: DSM hyper-networks start near h = 0.5
                nn.init.normal_(module.weight, std=0.01)
                nn.init.zeros_(module.bias)


def _micronet(
    key: str, num_classes: int, img_size: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> MicroNet:
    return MicroNet(VARIANTS[key], num_classes=num_classes, img_size=img_size, mean=mean, std=std)


@register("model", "micronet-m0")
def micronet_m0(
    *,
    num_classes: int,
    img_size: int = 32,
    mean: tuple[float, ...] = (0.5, 0.5, 0.5),
    std: tuple[float, ...] = (0.25, 0.25, 0.25),
) -> MicroNet:
    """MicroNet-M0 (2108.05894): 1,019,590 params and 3.45M MACs at 224×224, 1000 classes (paper: 4M MAdds, 46.6%)."""
    return _micronet("m0", num_classes, img_size, mean, std)


@register("model", "micronet-m1")
def micronet_m1(
    *,
    num_classes: int,
    img_size: int = 32,
    mean: tuple[float, ...] = (0.5, 0.5, 0.5),
    std: tuple[float, ...] = (0.25, 0.25, 0.25),
) -> MicroNet:
    """MicroNet-M1 (2108.05894): 1,777,587 params and 5.31M MACs at 224×224, 1000 classes (paper: 6M MAdds, 51.4%)."""
    return _micronet("m1", num_classes, img_size, mean, std)


@register("model", "micronet-m2")
def micronet_m2(
    *,
    num_classes: int,
    img_size: int = 32,
    mean: tuple[float, ...] = (0.5, 0.5, 0.5),
    std: tuple[float, ...] = (0.25, 0.25, 0.25),
) -> MicroNet:
    """MicroNet-M2 (2108.05894): 2,393,876 params and 10.34M MACs at 224×224, 1000 classes (paper: 12M MAdds, 59.4%)."""
    return _micronet("m2", num_classes, img_size, mean, std)


@register("model", "micronet-m3")
def micronet_m3(
    *,
    num_classes: int,
    img_size: int = 32,
    mean: tuple[float, ...] = (0.5, 0.5, 0.5),
    std: tuple[float, ...] = (0.25, 0.25, 0.25),
) -> MicroNet:
    """MicroNet-M3 (2108.05894): 2,622,960 params and 18.24M MACs at 224×224, 1000 classes (paper: 21M MAdds, 62.5%)."""
    return _micronet("m3", num_classes, img_size, mean, std)

# The paper's SGD recipe (600 epochs, Nesterov, cosine, lr 0.2 at batch 512, wd 3e-5, M3 4e-5, no label
# smoothing) at the quick scale: same optimiser and cosine decay, a short warm-up, lr 0.1 at batch 64 (four
# times the paper's rate per image: a short schedule needs a higher one; 0.5 and AdamW 3e-3 did worse). Batch 64: these nets learn per step, not per image (on shapes, 50k images:
# 0.47 at batch 128, 0.56 at 64); 150k images reach 0.91 (M1, README).
for _key in VARIANTS:
    add_recipe(Recipe("sgd", lr=0.1, weight_decay=4e-5 if _key == "m3" else 3e-5, schedule="cosine", warmup=0.1,
                      batch_size=64, train_images=150_000 if _key in ("m0", "m1") else 100_000,
                      source="MicroNet's Nesterov SGD/cosine recipe (2108.05894 code), scaled"),
               f"micronet-{_key}")
