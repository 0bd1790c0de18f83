"""Mobile-Former: a MobileNet and a tiny transformer in parallel, joined by two-way cross attention.

Chen, Dai, Chen, Liu, Dong, Yuan, Liu, "Mobile-Former: Bridging MobileNet and Transformer",
CVPR 2022, arXiv 2108.05895. Seven ImageNet variants, named by their MAdds at 224×224:
``mobile-former-{26m,52m,96m,151m,214m,294m,508m}``.

Two streams run side by side. The *Mobile* stream is a feature map ``x`` of shape ``(N, C, H, W)``
processed by inverted-bottleneck blocks; the *Former* stream is a handful of learned tokens ``z`` of
shape ``(N, M, d)`` (M = 3..6, d = 128 or 192), shared by all images at the input. Every block

1. *Mobile→Former*: the tokens read the feature map by cross attention (2 heads; only the token side
   is projected, keys and values are the raw pixels, so the bridge is cheap);
2. *Former*: self-attention among the M tokens plus a 2× GELU FFN, both post-LayerNorm;
3. *Mobile*: an inverted bottleneck whose activations are dynamic ReLUs, ``max(a1·x, a2·x)`` with
   per-channel slopes computed from token 0;
4. *Former→Mobile*: every pixel reads the tokens by cross attention (2 heads, only the tokens are
   projected) and adds the result to the feature map.

After the last block the tokens read the map once more; the head pools a 6× widened 1×1 conv of
the map, concatenates token 0 and runs ``Linear → BN1d → h-swish → Dropout → Linear``. Because of
that BN1d, train mode needs batch ≥ 2. The bridges are resolution-free, so any input size works
(non-square included): every variant downsamples 32× (7×7 at 224, 1×1 at 32; stride-2 layers on a
1×1 map stay 1×1).

This is a re-implementation from the paper and from the description of the authors' release
(``AAboys/MobileFormer``, commit f447310; that repository carries no licence, so none of its code
is used). The module structure follows the release so that, at 1000 classes and 224×224, parameter
counts and MACs (``secbench.models.flops``) equal the reference's measurements of the release exactly,
for all seven variants. One detail comes from those counts, not from the description: in 26M the
head's 1×1 conv is grouped like the blocks' (41,472 fewer parameters). What differs from the authors'
code, and why:

- Attention uses ``F.scaled_dot_product_attention`` (same maths: softmax over keys, scale
  ``head_dim ** -0.5``) instead of explicit matmuls, for speed; secbench's MAC counter counts it.
- Tokens are a plain ``(M, d)`` parameter laid out batch-first ``(N, M, d)`` rather than an
  ``nn.Embedding`` read as ``(M, N, d)``: same values, same count, fewer transposes.
- Only the released configuration is implemented (post-norm, no drop-path, dynamic gate on the
  Mobile→Former bridge only, no projections on the feature-map side); the release's switches for
  other ablations are left out.
- Weight init is ours (the release's is not recorded in the reference): convolutions Kaiming-normal
  (fan-out), linear layers N(0, 0.01) with zero bias, so every dynamic ReLU starts as a plain ReLU,
  every bridge gate at 1 and every attention near uniform.
- Choices the counts cannot check: the token-free first block has no identity shortcut, a dynamic
  ReLU's hyper-net output is split as ``[a1 | a2]``, and a channel shuffle follows each grouped 1×1
  conv (26M); the head's dropout (0.3 or 0.2) is assigned as explained at :data:`CONFIGS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from secbench.models.card import ModelCard, add_card
from secbench.models.layers import Normalize, stem_stride
from secbench.models.recipe import Recipe, add_recipe
from secbench.registry import register

__all__ = ["CONFIGS", "DynamicReLU", "MobileFormer", "MobileFormerConfig", "build_mobile_former"]

PAPER = "2108.05895"


def _split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """``(N, L, C)`` → ``(N, heads, L, C / heads)``."""
    n, length, c = t.shape
    return t.view(n, length, heads, c // heads).transpose(1, 2)


def _merge_heads(t: torch.Tensor) -> torch.Tensor:
    """``(N, heads, L, c)`` → ``(N, L, heads · c)``."""
    n, heads, length, c = t.shape
    return t.transpose(1, 2).reshape(n, length, heads * c)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head softmax attention, scale ``head_dim ** -0.5``: ``(N, Lq, C), (N, Lk, C), (N, Lk, C')`` → ``(N, Lq, C')``."""
    out = F.scaled_dot_product_attention(
        _split_heads(q, heads), _split_heads(k, heads), _split_heads(v, heads)
    )
    return _merge_heads(out)


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle, so that stacked grouped 1×1 convs mix all groups.

    Shape: ``(N, C, H, W)`` → ``(N, C, H, W)``, channel ``g · (C/G) + i`` moved to ``i · G + g``.
    """

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


def _conv_bn(in_ch: int, out_ch: int, kernel: int, *, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Bias-free conv (BN supplies the bias) → BN: ``(N, C_in, H, W)`` → ``(N, C_out, H / stride, W / stride)``."""
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_ch))


def _pointwise(in_ch: int, out_ch: int, groups: int) -> nn.Sequential:
    """1×1 conv → BN, grouped and channel-shuffled when ``groups > 1`` (the 26M variant's saving)."""
    layers = _conv_bn(in_ch, out_ch, 1, groups=groups)
    if groups > 1:
        layers.append(ChannelShuffle(groups))
    return layers


def _depthwise(in_ch: int, multiplier: int, stride: int) -> nn.Sequential:
    """3×3 depthwise conv with channel multiplier → BN: ``(N, C, H, W)`` → ``(N, C · multiplier, H / s, W / s)``."""
    return _conv_bn(in_ch, in_ch * multiplier, 3, stride=stride, groups=in_ch)


class DynamicReLU(nn.Module):
    """Dynamic ReLU ``y = max(a1 · x, a2 · x)`` with per-image, per-channel slopes from one token.

    The slopes come from a small hyper-network on token 0: ``h = hsigmoid(W2 · relu(W1 · t))``, split in
    two halves ``h1, h2`` ∈ [0, 1]^C; ``a1 = 2 (h1 - 0.5) + 1`` ∈ [0, 2] and ``a2 = 2 (h2 - 0.5)`` ∈ [-1, 1].
    At ``h = 0.5`` this is a plain ReLU (``a1 = 1``, ``a2 = 0``).

    Shape: ``(N, C, H, W)`` and token ``(N, d)`` → ``(N, C, H, W)``.
    """

    def __init__(self, channels: int, token_dim: int, reduction: int = 4) -> None:
        super().__init__()
        self.hyper = nn.Sequential(
            nn.Linear(token_dim, token_dim // reduction),
            nn.ReLU(inplace=True),
            nn.Linear(token_dim // reduction, 2 * channels),
            nn.Hardsigmoid(),
        )

    def forward(self, x: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
        h = self.hyper(token)[:, :, None, None]  # (N, 2C, 1, 1) in [0, 1]
        h1, h2 = h.chunk(2, dim=1)  # (N, C, 1, 1) each
        a1, a2 = 2 * (h1 - 0.5) + 1, 2 * (h2 - 0.5)
        return torch.maximum(a1 * x, a2 * x)


class MobileToFormer(nn.Module):
    """Mobile→Former bridge: the tokens read the feature map by cross attention (2 heads).

    Only the token side is projected (``q = W_q z``, d → C); keys and values are the raw pixels, so the
    bridge costs ``2 · M · HW · C`` MACs and no projection of the map. The read-out is gated per channel by
    ``2 · hsigmoid(W_g z)`` before the output projection C → d, a residual and a LayerNorm (post-norm).

    Shape: ``x (N, C, H, W), z (N, M, d)`` → ``z (N, M, d)``.
    """

    def __init__(self, channels: int, token_dim: int, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(token_dim, channels)
        self.gate = nn.Linear(token_dim, channels)
        self.proj = nn.Linear(channels, token_dim)
        self.norm = nn.LayerNorm(token_dim)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        pixels = x.flatten(2).transpose(1, 2)  # (N, HW, C)
        out = _attend(self.query(z), pixels, pixels, self.heads)  # (N, M, C)
        out = out * 2 * F.hardsigmoid(self.gate(z))  # (N, M, C), gate in [0, 2]
        return self.norm(z + self.proj(out))  # (N, M, d)


class Former(nn.Module):
    """Former block: token self-attention (4 heads, unprojected keys/values) and a 2× GELU FFN, post-norm.

    Shape: ``(N, M, d)`` → ``(N, M, d)``.
    """

    def __init__(self, token_dim: int, heads: int = 4, ffn_ratio: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(token_dim, token_dim)
        self.proj = nn.Linear(token_dim, token_dim)
        self.norm1 = nn.LayerNorm(token_dim)
        self.ffn = nn.Sequential(
            nn.Linear(token_dim, ffn_ratio * token_dim),
            nn.GELU(),
            nn.Linear(ffn_ratio * token_dim, token_dim),
        )
        self.norm2 = nn.LayerNorm(token_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = self.norm1(z + self.proj(_attend(self.query(z), z, z, self.heads)))  # (N, M, d)
        return self.norm2(z + self.ffn(z))  # (N, M, d)


class FormerToMobile(nn.Module):
    """Former→Mobile bridge: every pixel reads the tokens by cross attention (2 heads), added to the map.

    The pixels are the raw queries; only the tokens are projected (``k = W_k z``, ``v = W_v z``, d → C).

    Shape: ``x (N, C, H, W), z (N, M, d)`` → ``x (N, C, H, W)``.
    """

    def __init__(self, channels: int, token_dim: int, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.key = nn.Linear(token_dim, channels)
        self.value = nn.Linear(token_dim, channels)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        pixels = x.flatten(2).transpose(1, 2)  # (N, HW, C)
        out = _attend(pixels, self.key(z), self.value(z), self.heads)  # (N, HW, C)
        return x + out.transpose(1, 2).reshape(n, c, h, w)


class BlockSpec(NamedTuple):
    """One row of a variant's block table (see :data:`CONFIGS`).

    ``depthwise_first`` selects the release's ``DnaBlock3`` layout (dw-expand → pw, twice) over
    ``DnaBlock`` (pw-expand → dw → pw); ``expand2 = 0`` makes a token-free plain block.
    """

    depthwise_first: bool
    expand: int
    out_ch: int
    stride: int = 1
    expand2: int = 0

    @property
    def plain(self) -> bool:
        """A ``DnaBlock3`` row with ``expand2 = 0``: no second half, no tokens."""
        return self.depthwise_first and self.expand2 == 0


def _d(expand: int, out_ch: int) -> BlockSpec:
    """``DnaBlock`` row: stride 1."""
    return BlockSpec(False, expand, out_ch)


def _d3(expand: int, out_ch: int, stride: int, expand2: int) -> BlockSpec:
    """``DnaBlock3`` row."""
    return BlockSpec(True, expand, out_ch, stride, expand2)


class PlainMobile(nn.Module):
    """Token-free first block (``expand2 = 0``): dw 3×3 (×e) → BN → ReLU6 → 1×1 → BN.

    Shape: ``(N, C_in, H, W)`` → ``(N, C_out, H / s, W / s)``.
    """

    def __init__(self, in_ch: int, spec: BlockSpec, groups: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            _depthwise(in_ch, spec.expand, spec.stride),
            nn.ReLU6(inplace=True),
            _pointwise(in_ch * spec.expand, spec.out_ch, groups),
        )

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.conv(x), z


class ExpandMobile(nn.Module):
    """Inverted bottleneck with dynamic ReLUs (``DnaBlock``'s Mobile part).

    1×1 (×e) → BN → DyReLU → dw 3×3 → BN → DyReLU → 1×1 → BN, identity residual when the shape allows.

    Shape: ``(N, C_in, H, W)``, token ``(N, d)`` → ``(N, C_out, H / s, W / s)``.
    """

    def __init__(self, in_ch: int, spec: BlockSpec, token_dim: int, groups: int) -> None:
        super().__init__()
        hidden = in_ch * spec.expand
        self.expand = _pointwise(in_ch, hidden, groups)
        self.act1 = DynamicReLU(hidden, token_dim)
        self.dw = _depthwise(hidden, 1, spec.stride)
        self.act2 = DynamicReLU(hidden, token_dim)
        self.project = _pointwise(hidden, spec.out_ch, groups)
        self.residual = spec.stride == 1 and in_ch == spec.out_ch

    def forward(self, x: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.expand(x), token)  # (N, C_in·e, H, W)
        out = self.act2(self.dw(out), token)  # (N, C_in·e, H/s, W/s)
        out = self.project(out)  # (N, C_out, H/s, W/s)
        return x + out if self.residual else out


class DepthwiseMobile(nn.Module):
    """Two depthwise-first bottlenecks (``DnaBlock3``'s Mobile part), used where stride or width changes.

    dw 3×3 (×e1, stride s) → BN → DyReLU → 1×1 → BN gives ``y``; then
    dw 3×3 (×e2) → BN → DyReLU → 1×1 → BN is added to ``y`` as a residual.

    Shape: ``(N, C_in, H, W)``, token ``(N, d)`` → ``(N, C_out, H / s, W / s)``.
    """

    def __init__(self, in_ch: int, spec: BlockSpec, token_dim: int, groups: int) -> None:
        super().__init__()
        self.dw1 = _depthwise(in_ch, spec.expand, spec.stride)
        self.act1 = DynamicReLU(in_ch * spec.expand, token_dim)
        self.pw1 = _pointwise(in_ch * spec.expand, spec.out_ch, groups)
        self.dw2 = _depthwise(spec.out_ch, spec.expand2, 1)
        self.act2 = DynamicReLU(spec.out_ch * spec.expand2, token_dim)
        self.pw2 = _pointwise(spec.out_ch * spec.expand2, spec.out_ch, groups)

    def forward(self, x: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
        y = self.pw1(self.act1(self.dw1(x), token))  # (N, C_out, H/s, W/s)
        return y + self.pw2(self.act2(self.dw2(y), token))  # (N, C_out, H/s, W/s)


class MobileFormerBlock(nn.Module):
    """One Mobile-Former block: Mobile→Former, Former, Mobile (DyReLU from token 0), Former→Mobile.

    Shape: ``x (N, C_in, H, W), z (N, M, d)`` → ``x (N, C_out, H / s, W / s), z (N, M, d)``.
    """

    def __init__(self, in_ch: int, spec: BlockSpec, token_dim: int, groups: int) -> None:
        super().__init__()
        self.mobile_to_former = MobileToFormer(in_ch, token_dim)
        self.former = Former(token_dim)
        mobile = DepthwiseMobile if spec.depthwise_first else ExpandMobile
        self.mobile = mobile(in_ch, spec, token_dim, groups)
        self.former_to_mobile = FormerToMobile(spec.out_ch, token_dim)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.former(self.mobile_to_former(x, z))  # (N, M, d)
        x = self.mobile(x, z[:, 0])  # (N, C_out, H/s, W/s)
        return self.former_to_mobile(x, z), z


@dataclass(frozen=True)
class MobileFormerConfig:
    """One variant: the release's config (reference §2.3) and the numbers it must reproduce.

    Attributes:
        stem: stem width (3×3 stride-2 conv).
        blocks: the block table.
        num_tokens, token_dim: the Former stream, ``M`` tokens of width ``d``.
        head_dim: width ``F`` of the hidden head layer, the ``D`` of :meth:`MobileFormer.features`.
        dropout: dropout before the classifier, from the README's training recipe.
        card: reference numbers (official-code measurements and the paper's table).
        groups: groups of every 1×1 conv (4 only in 26M, with channel shuffle).
    """

    stem: int
    blocks: tuple[BlockSpec, ...]
    num_tokens: int
    token_dim: int
    head_dim: int
    dropout: float
    card: ModelCard
    groups: int = 1


class MobileFormer(nn.Module):
    """Mobile-Former classifier with the secbench model surface.

    Not a :class:`~secbench.models.layers.ConvClassifier` (its trunk carries two streams and its
    features concatenate token 0 to the pooled map), but it exposes the same attributes:

    - ``normalize``: the in-model :class:`~secbench.models.layers.Normalize`, the first op;
    - ``last_conv``: the head's 1×1 conv C → 6C → BN → ReLU6, whose ``(N, 6C, h, w)`` output is pooled;
      Fine-Pruning ranks and masks these ``6C`` channels;
    - ``features(x)``: ``(N, D)`` with ``D = head_dim``, the input of ``classifier``;
    - ``classifier``: the final ``nn.Linear(head_dim, num_classes)``.

    Shape: ``(N, 3, H, W)`` float in [0, 1] → ``(N, num_classes)`` logits.
    """

    def __init__(
        self, cfg: MobileFormerConfig, *, num_classes: int, img_size: int, mean: tuple[float, ...],
        std: tuple[float, ...]
    ) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.stem = nn.Sequential(_conv_bn(3, cfg.stem, 3, stride=stem_stride(img_size)), nn.ReLU6(inplace=True))
        self.tokens = nn.Parameter(torch.randn(cfg.num_tokens, cfg.token_dim))  # nn.Embedding's N(0, 1)
        blocks: list[nn.Module] = []
        in_ch = cfg.stem
        for spec in cfg.blocks:
            blocks.append(
                PlainMobile(in_ch, spec, cfg.groups)
                if spec.plain
                else MobileFormerBlock(in_ch, spec, cfg.token_dim, cfg.groups)
            )
            in_ch = spec.out_ch
        self.blocks = nn.ModuleList(blocks)
        self.mobile_to_former = MobileToFormer(in_ch, cfg.token_dim)
        # Grouped like the blocks' 1×1 convs (26M), but not shuffled: its channels are only pooled.
        self.last_conv = nn.Sequential(
            _conv_bn(in_ch, 6 * in_ch, 1, groups=cfg.groups), nn.ReLU6(inplace=True)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(
            nn.Linear(6 * in_ch + cfg.token_dim, cfg.head_dim),
            nn.BatchNorm1d(cfg.head_dim),
            nn.Hardswish(),
            nn.Dropout(cfg.dropout),
        )
        self.classifier = nn.Linear(cfg.head_dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                # Small weights, zero bias: the DyReLU hyper-nets output hsigmoid(0) = 0.5, i.e. a plain ReLU,
                # and every attention starts near uniform.
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features: ``(N, 3, H, W)`` in [0, 1] → ``(N, head_dim)``."""
        x = self.stem(self.normalize(x))  # (N, stem, H/s, W/s), s the stem stride
        # (N, M, d): the same learned tokens for every image. A copy, not an expand(): under no_grad a view of
        # a parameter still requires grad but has no grad_fn, which FlopCounterMode's module hooks reject.
        z = self.tokens.repeat(x.shape[0], 1, 1)
        for block in self.blocks:
            x, z = block(x, z)  # (N, C, H/32, W/32) after the last one
        z = self.mobile_to_former(x, z)  # (N, M, d)
        pooled = F.hardswish(self.pool(self.last_conv(x)).flatten(1))  # (N, 6C)
        return self.head(torch.cat([pooled, z[:, 0]], dim=1))  # (N, head_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _card(name: str, params: int, macs: int, published: tuple[float, float, float]) -> ModelCard:
    """``params`` and ``macs`` measured on the authors' code (reference §5); ``published``: M params, M MAdds, top-1."""
    params_m, madds_m, top1 = published
    return ModelCard(name, PAPER, params, macs, params_m, madds_m, top1)


# 52M and 26M share their rows; 26M groups its 1×1 convs instead.
_BLOCKS_52M = (
    _d3(3, 12, 2, 0), _d(3, 12), _d3(6, 24, 2, 4), _d(3, 24), _d3(6, 48, 2, 4), _d(4, 48), _d(6, 64),
    _d3(6, 96, 2, 4), _d(6, 96),
)  # fmt: skip

# The README trains with dropout 0.3 or 0.2 without saying which model gets which; 0.3 goes to the two
# largest models, the ones it also gives the strongest weight decay (0.20).
CONFIGS: dict[str, MobileFormerConfig] = {
    "mobile-former-508m": MobileFormerConfig(
        24,
        (
            _d3(2, 24, 1, 0), _d3(6, 40, 2, 4), _d(3, 40), _d3(6, 72, 2, 4), _d(3, 72), _d3(6, 128, 2, 4),
            _d(4, 128), _d(6, 176), _d(6, 176), _d3(6, 240, 2, 4), _d(6, 240), _d(6, 240),
        ),
        num_tokens=6, token_dim=192, head_dim=1920, dropout=0.3,
        card=_card("mobile-former-508m", 13_976_976, 498_467_680, (14.0, 508.0, 79.3)),
    ),
    "mobile-former-294m": MobileFormerConfig(
        16,
        (
            _d3(2, 16, 1, 0), _d3(6, 24, 2, 4), _d(4, 24), _d3(6, 48, 2, 4), _d(4, 48), _d3(6, 96, 2, 4),
            _d(4, 96), _d(6, 128), _d(6, 128), _d3(6, 192, 2, 4), _d(6, 192), _d(6, 192),
        ),
        num_tokens=6, token_dim=192, head_dim=1920, dropout=0.3,
        card=_card("mobile-former-294m", 11_422_648, 286_732_160, (11.4, 294.0, 77.9)),
    ),
    "mobile-former-214m": MobileFormerConfig(
        12,
        (
            _d3(2, 12, 1, 0), _d3(6, 20, 2, 4), _d(3, 20), _d3(6, 40, 2, 4), _d(4, 40), _d3(6, 80, 2, 4),
            _d(4, 80), _d(6, 112), _d(6, 112), _d3(6, 160, 2, 4), _d(6, 160), _d(6, 160),
        ),
        num_tokens=6, token_dim=192, head_dim=1600, dropout=0.2,
        card=_card("mobile-former-214m", 9_425_920, 208_374_240, (9.4, 214.0, 76.7)),
    ),
    "mobile-former-151m": MobileFormerConfig(
        12,
        (
            _d3(2, 12, 1, 0), _d3(6, 16, 2, 4), _d(3, 16), _d3(6, 32, 2, 4), _d(3, 32), _d3(6, 64, 2, 4),
            _d(4, 64), _d(6, 88), _d(6, 88), _d3(6, 128, 2, 4), _d(6, 128), _d(6, 128),
        ),
        num_tokens=6, token_dim=192, head_dim=1280, dropout=0.2,
        card=_card("mobile-former-151m", 7_595_828, 146_249_168, (7.6, 151.0, 75.2)),
    ),
    "mobile-former-96m": MobileFormerConfig(
        12,
        (
            _d3(2, 12, 1, 0), _d3(6, 16, 2, 4), _d3(6, 32, 2, 4), _d(3, 32), _d3(6, 64, 2, 4), _d(4, 64),
            _d(6, 88), _d3(6, 128, 2, 4), _d(6, 128),
        ),
        num_tokens=4, token_dim=128, head_dim=1280, dropout=0.2,
        card=_card("mobile-former-96m", 4_585_252, 92_017_040, (4.6, 96.0, 72.8)),
    ),
    "mobile-former-52m": MobileFormerConfig(
        8, _BLOCKS_52M, num_tokens=3, token_dim=128, head_dim=1024, dropout=0.2,
        card=_card("mobile-former-52m", 3_469_092, 49_290_496, (3.5, 52.0, 68.7)),
    ),
    "mobile-former-26m": MobileFormerConfig(
        8, _BLOCKS_52M, num_tokens=3, token_dim=128, head_dim=1024, dropout=0.2, groups=4,
        card=_card("mobile-former-26m", 3_232_788, 23_550_208, (3.2, 26.0, 64.0)),
    ),
}  # fmt: skip


def build_mobile_former(
    variant: str,
    *,
    num_classes: int,
    img_size: int = 32,
    mean: tuple[float, ...] = (0.5, 0.5, 0.5),
    std: tuple[float, ...] = (0.25, 0.25, 0.25),
) -> MobileFormer:
    """Build ``variant`` (a key of :data:`CONFIGS`); any ``H, W >= 1`` works.

    For ``img_size <= 64`` the stem has stride 1 instead of 2 (as ``mobilenet-v3-small``'s): the network
    downsamples 32×, which would leave 2×2 and 1×1 maps for the last two stages of a 32×32 image. Params
    are unchanged; at 224×224 the architecture is the paper's.
    """
    return MobileFormer(CONFIGS[variant], num_classes=num_classes, img_size=img_size, mean=mean, std=std)


# This implementation measures exactly the cards' params and MACs (tests/test_mobile_former.py).
for _name, _cfg in CONFIGS.items():
    _c = _cfg.card
    register(
        "model",
        _name,
        summary=f"Mobile-Former-{_name.rsplit('-', 1)[1].upper()} ({PAPER}): {_c.params:,} params and "
        f"{_c.macs / 1e6:.2f}M MACs at 224×224, 1000 classes (paper: {_c.published_madds_m:.0f}M MAdds, "
        f"{_c.published_top1}%).",
    )(partial(build_mobile_former, _name))
    add_card(_c)

# The paper's AdamW recipe (450 epochs, cosine, lr 8e-4-1e-3 at batch 1024, wd 0.1-0.2, no mixup up to 96M)
# at the quick scale: same optimiser and schedule shape, a short warm-up, batch 64 (per-step learners, as
# MicroNet); 26M reaches 0.97 on shapes after 100k images (README). Larger variants cost more per image and
# get fewer.
for _name in CONFIGS:
    add_recipe(Recipe("adamw", lr=2e-3, weight_decay=0.05, schedule="cosine", warmup=0.1, batch_size=64,
                      train_images=100_000 if _name in ("mobile-former-26m", "mobile-former-52m") else 60_000,
                      source="Mobile-Former's AdamW/cosine recipe (2108.05895 README), scaled"), _name)
