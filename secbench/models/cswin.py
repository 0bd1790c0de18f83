"""CSWin Transformer T, S, B and L, written from the paper's description and checked against its numbers.

Dong, Bao, Chen, Zhang, Yu, Yuan, Chen, Guo, "CSWin Transformer: A General Vision Transformer Backbone
with Cross-Shaped Windows", CVPR 2022, arXiv 2107.00652. Official code: ``microsoft/CSWin-Transformer``
(MIT): the configs and mechanics follow its description in the project's architecture reference, the
any-size padding its segmentation backbone; no code was copied.

Architecture: a 7×7 stride-4 conv token embedding, then four stages at H/4, H/8, H/16, H/32 with widths
C, 2C, 4C, 8C, each opened by a convolutional merge (3×3 stride-2 conv → LayerNorm; the stem for stage 1).
Every block is pre-norm: ``x + DropPath(proj(CSWinAttn(LN(x))))``, then ``x + DropPath(MLP(LN(x)))``.
Cross-shaped window attention splits the channels (and heads) in half: one half attends within vertical
stripes (full height, ``sw`` columns), the other within horizontal stripes (``sw`` rows, full width),
with stripe widths 1, 2, 7 in stages 1-3; stage 4 uses one branch of global attention over all heads,
as the official code's ``last_stage`` does. LePE adds a depthwise 3×3 conv of V, taken inside each
window, to the attention output. Head: LayerNorm → global mean → Linear. At 1000 classes and 224×224
the parameter counts equal the official model's exactly, and so do the MACs
(``secbench.models.flops.count_macs``): T 22,320,552 / 4.324G, S 34,643,304 / 6.801G,
B 77,382,184 / 14.955G, L 173,262,664 / 33.130G.

Deviations from the official code, and why:

- **Any input size.** The classification model fixes its resolution at construction and asserts square
  inputs. Here, as in the official segmentation backbone, a stripe branch zero-pads its q/k/v maps,
  split evenly on both sides, up to a multiple of the stripe width, and crops the output back. Unlike
  that backbone, the padded keys are **masked** out of the softmax: there, a padded key has k = 0 and
  still takes a share of every softmax, so results depend on how much padding there is. With the mask,
  and V zero at padded positions (which is exactly the zero padding LePE's conv uses at map borders),
  a padded stripe computes exactly what a narrower stripe at the map edge would.
- **Stripes wider than the map are clamped to it** (e.g. stage 3 at 32×32 input: a 2×2 map, stripe 7).
  By the argument above, padding with the mask would give the same numbers and only waste compute on
  padding. A stripe that covers the whole map makes both branches global attention, which is what the
  official classification code switches to (one branch, all heads) when the map side equals the
  stripe: the same function, because heads and LePE channels are independent. Clamping keeps the
  module tree, and so the weights, independent of the input size.
- The official ``img_size`` argument fixes the resolution; here ``img_size`` is only checked (the
  network accepts any H, W ≥ 3).
- Attention runs through ``F.scaled_dot_product_attention`` (same maths, scale head_dim^-1/2, same
  MACs). Attention, projection and MLP dropout are left out: the official configs set them to 0.
- Drop-path rates come from the official README's training commands, linearly increasing over the
  blocks: T 0.2, S 0.4, B 0.5, L 0.2 (the rate of its ImageNet-22K → 1K fine-tuning at 224).
- The final LayerNorm works on the ``(N, 8C, h, w)`` map (the same parameters as on tokens) and is the
  last entry of ``stages``, so that the :class:`~secbench.models.layers.ConvClassifier` surface fits.
  Module names differ from the official ones: official checkpoints would need a key map.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from secbench.errors import SecbenchError
from secbench.models.card import ModelCard, add_card
from secbench.models.layers import ConvClassifier
from secbench.models.recipe import Recipe, add_recipe
from secbench.registry import register

__all__ = [
    "CONFIGS",
    "CSWinConfig",
    "CSWinTransformer",
    "CrossShapedAttention",
    "DropPath",
    "StripeAttention",
    "build_cswin",
]

Axis = Literal["vertical", "horizontal", "full"]


@dataclass(frozen=True)
class CSWinConfig:
    """One CSWin variant, as in the official ``models/cswin.py`` (stage widths are C, 2C, 4C, 8C)."""

    embed_dim: int  # C, the stage-1 width
    depths: tuple[int, int, int, int]  # blocks per stage
    heads: tuple[int, int, int, int]  # attention heads per stage (half per stripe branch in stages 1-3)
    drop_path: float  # stochastic-depth rate of the last block (official README training commands)
    # Stripe widths of stages 1-3; stage 4 is global (the official sw = 7 equals its 7×7 map at 224).
    stripes: tuple[int, int, int] = (1, 2, 7)
    mlp_ratio: float = 4.0


CONFIGS: dict[str, CSWinConfig] = {
    "cswin-t": CSWinConfig(64, (1, 2, 21, 1), (2, 4, 8, 16), drop_path=0.2),
    "cswin-s": CSWinConfig(64, (2, 4, 32, 2), (2, 4, 8, 16), drop_path=0.4),
    "cswin-b": CSWinConfig(96, (2, 4, 32, 2), (4, 8, 16, 32), drop_path=0.5),
    "cswin-l": CSWinConfig(144, (2, 4, 32, 2), (6, 12, 24, 24), drop_path=0.2),
}


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a whole sample's residual branch with probability ``p`` and
    rescale the kept ones by ``1 / (1 - p)``. Shape: ``(N, ...)`` → ``(N, ...)``."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p:.3f}"


def _to_windows(x: torch.Tensor, win_h: int, win_w: int) -> torch.Tensor:
    """``(N, H, W, *E)`` with ``win_h | H``, ``win_w | W`` → ``(N·H/win_h·W/win_w, win_h·win_w, *E)``,
    windows in row-major order per sample."""
    n, h, w, *rest = x.shape
    x = x.view(n, h // win_h, win_h, w // win_w, win_w, *rest).transpose(2, 3)  # (N, gh, gw, wh, ww, *E)
    return x.reshape(n * (h // win_h) * (w // win_w), win_h * win_w, *rest)


def _from_windows(x: torch.Tensor, n: int, h: int, w: int, win_h: int, win_w: int) -> torch.Tensor:
    """Inverse of :func:`_to_windows`: ``(N·gh·gw, win_h·win_w, C)`` → ``(N, H, W, C)``."""
    x = x.view(n, h // win_h, w // win_w, win_h, win_w, -1).transpose(2, 3)  # (N, gh, wh, gw, ww, C)
    return x.reshape(n, h, w, -1)


class StripeAttention(nn.Module):
    """Multi-head self-attention inside stripe windows, plus LePE (a depthwise 3×3 conv of V per window).

    ``axis`` "vertical": windows of full height and ``stripe`` columns; "horizontal": ``stripe`` rows and
    full width; "full": the whole map (``stripe`` unused). See the module docstring for padding and clamping.

    Shape: ``(N, H, W, 3, C)`` projected q/k/v → ``(N, H, W, C)``.
    """

    def __init__(self, dim: int, num_heads: int, axis: Axis, stripe: int = 0) -> None:
        super().__init__()
        if axis != "full" and stripe < 1:
            raise ValueError(f"a {axis} stripe branch needs stripe >= 1, got {stripe}")
        self.num_heads, self.axis, self.stripe = num_heads, axis, stripe
        self.lepe = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim)

    def window(self, h: int, w: int) -> tuple[int, int]:
        """Window ``(height, width)`` on an ``h × w`` map; a stripe wider than the map is clamped to it."""
        if self.axis == "vertical":
            return h, min(self.stripe, w)
        if self.axis == "horizontal":
            return min(self.stripe, h), w
        return h, w

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        n, h, w, _, c = qkv.shape
        win_h, win_w = self.window(h, w)
        pad_h, pad_w = -h % win_h, -w % win_w
        top, left = pad_h // 2, pad_w // 2  # split evenly, as the official segmentation backbone does
        hp, wp = h + pad_h, w + pad_w
        mask = None
        if pad_h or pad_w:
            # Zeros: padded V then acts as the zero padding LePE's conv sees at a map border.
            qkv = F.pad(qkv, (0, 0, 0, 0, left, pad_w - left, top, pad_h - top))  # (N, Hp, Wp, 3, C)
            real = torch.zeros(1, hp, wp, dtype=torch.bool, device=qkv.device)
            real[:, top : top + h, left : left + w] = True
            # Keys at padded positions take no part in any softmax. Every window keeps real keys (the
            # padding on each side is narrower than a window), so no row is fully masked.
            mask = _to_windows(real, win_h, win_w).repeat(n, 1)[:, None, None, :]  # (B', 1, 1, L)
        length = win_h * win_w
        q, k, v = _to_windows(qkv, win_h, win_w).unbind(2)  # each (B', L, C), B' = N·windows
        lepe = self.lepe(v.transpose(1, 2).reshape(-1, c, win_h, win_w))  # (B', C, win_h, win_w)
        # (B', L, C) → (B', nh, L, hd), channels grouped by head as in the official code
        q, k, v = (t.unflatten(-1, (self.num_heads, -1)).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B', nh, L, hd)
        out = out.transpose(1, 2).reshape(-1, length, c) + lepe.flatten(2).transpose(1, 2)  # (B', L, C)
        return _from_windows(out, n, hp, wp, win_h, win_w)[:, top : top + h, left : left + w]

    def extra_repr(self) -> str:
        stripe = "" if self.axis == "full" else f", stripe={self.stripe}"
        return f"axis={self.axis}, num_heads={self.num_heads}{stripe}"


class CrossShapedAttention(nn.Module):
    """qkv projection → half the channels and heads on vertical stripes, half on horizontal → concat → proj.

    ``stripe=None`` gives one global branch with all heads (the official ``last_stage``).

    Shape: ``(N, H, W, C)`` → ``(N, H, W, C)``.
    """

    def __init__(self, dim: int, num_heads: int, stripe: int | None) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        if stripe is None:
            branches = [StripeAttention(dim, num_heads, "full")]
        else:
            branches = [
                StripeAttention(dim // 2, num_heads // 2, axis, stripe) for axis in ("vertical", "horizontal")
            ]
        self.branches = nn.ModuleList(branches)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, h, w, c = x.shape
        qkv = self.qkv(x).view(n, h, w, 3, c)  # (N, H, W, 3, C): q, k, v each split between the branches
        parts = qkv.chunk(len(self.branches), dim=-1)
        out = torch.cat([branch(part) for branch, part in zip(self.branches, parts, strict=True)], dim=-1)
        return self.proj(out)  # (N, H, W, C)


class CSWinBlock(nn.Module):
    """Pre-norm transformer block with cross-shaped window attention. Shape: ``(N, H, W, C)`` → same."""

    def __init__(
        self, dim: int, num_heads: int, stripe: int | None, mlp_ratio: float, drop_path: float
    ) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = CrossShapedAttention(dim, num_heads, stripe)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class CSWinStage(nn.Module):
    """Convolutional token embedding (conv → LayerNorm), then CSWin blocks, one per ``drop_paths`` entry.

    Shape: ``(N, C_in, H, W)`` → ``(N, C, H', W')``, ``H' = ⌊(H + 2·padding − kernel) / stride⌋ + 1``.
    """

    def __init__(
        self,
        in_dim: int,
        dim: int,
        *,
        num_heads: int,
        stripe: int | None,
        mlp_ratio: float,
        drop_paths: Sequence[float],
        kernel: int,
        stride: int,
        padding: int,
    ) -> None:
        super().__init__()
        self.embed = nn.Conv2d(in_dim, dim, kernel, stride, padding)
        self.norm = nn.LayerNorm(dim)
        self.blocks = nn.Sequential(*(CSWinBlock(dim, num_heads, stripe, mlp_ratio, p) for p in drop_paths))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.embed(x).permute(0, 2, 3, 1))  # (N, H', W', C) channels-last tokens
        return self.blocks(x).permute(0, 3, 1, 2)  # (N, C, H', W')


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a map. Shape: ``(N, C, H, W)`` → ``(N, C, H, W)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _init_weights(module: nn.Module) -> None:
    """The official init: truncated-normal(0.02) linear weights and zero biases; convs and norms keep torch's."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class CSWinTransformer(ConvClassifier):
    """CSWin Transformer on the secbench surface.

    ``stages`` holds the four :class:`CSWinStage` modules and the final :class:`ChannelLayerNorm`;
    ``classifier`` is the ``Linear(8C, num_classes)`` head, so ``features`` has ``D = 8C`` (512 for T/S,
    768 for B, 1152 for L). A transformer has no last conv: ``last_conv`` is the final LayerNorm, whose
    ``(N, 8C, h, w)`` output is exactly the map that gets averaged into ``features``, so Fine-Pruning's
    channel masks act on the feature channels.

    Args:
        config: the variant (see :data:`CONFIGS`).
        num_classes: number of logits.
        mean, std: per-channel statistics for the in-model :class:`~secbench.models.layers.Normalize`.

    Shape: ``(N, 3, H, W)`` float in [0, 1], any ``H, W >= 3`` → ``(N, num_classes)`` logits.
    """

    def __init__(
        self, config: CSWinConfig, *, num_classes: int, mean: tuple[float, ...], std: tuple[float, ...]
    ) -> None:
        dims = [config.embed_dim * 2**i for i in range(4)]
        # Linear in block index from 0 to drop_path, as torch.linspace would give (plain Python, so
        # the model can be built on the meta device to count parameters and MACs without memory).
        blocks = sum(config.depths)
        rates = [config.drop_path * i / max(blocks - 1, 1) for i in range(blocks)]
        stripes: list[int | None] = [*config.stripes, None]  # None: global attention in stage 4
        stages: list[nn.Module] = []
        start = 0
        layout = zip(dims, config.depths, config.heads, stripes, strict=True)
        for i, (dim, depth, heads, stripe) in enumerate(layout):
            # Stage 1 embeds the image with a 7×7 stride-4 conv; later stages merge with a 3×3 stride-2 conv.
            kernel, stride, padding = (7, 4, 2) if i == 0 else (3, 2, 1)
            in_dim = 3 if i == 0 else dims[i - 1]
            stages.append(
                CSWinStage(
                    in_dim,
                    dim,
                    num_heads=heads,
                    stripe=stripe,
                    mlp_ratio=config.mlp_ratio,
                    drop_paths=rates[start : start + depth],
                    kernel=kernel,
                    stride=stride,
                    padding=padding,
                )
            )
            start += depth
        stages.append(ChannelLayerNorm(dims[-1]))
        super().__init__(nn.Sequential(*stages), nn.Linear(dims[-1], num_classes), mean=mean, std=std)
        self.apply(_init_weights)


def build_cswin(
    variant: str,
    *,
    num_classes: int,
    img_size: int = 32,
    mean: tuple[float, ...] = (0.5, 0.5, 0.5),
    std: tuple[float, ...] = (0.25, 0.25, 0.25),
) -> CSWinTransformer:
    """Build ``variant`` (a key of :data:`CONFIGS`). ``img_size`` is only checked: the network takes any
    ``H, W >= 3`` (the 7×7 stride-4 stem with padding 2 needs 3 pixels)."""
    if img_size < 3:
        raise SecbenchError(f"{variant} needs img_size >= 3 (the 7x7 stride-4 stem), got {img_size}")
    return CSWinTransformer(CONFIGS[variant], num_classes=num_classes, mean=mean, std=std)


for _variant, _cfg in CONFIGS.items():
    _summary = f"CSWin Transformer-{_variant[-1].upper()} (arXiv 2107.00652), C={_cfg.embed_dim}, depths {_cfg.depths}"
    register("model", _variant, summary=_summary)(partial(build_cswin, _variant))

# Official-code measurements (architectures.md §5); this implementation measures identical params and MACs.
add_card(ModelCard("cswin-t", "2107.00652", params=22_320_552, macs=4_324_203_008,
                   published_params_m=23.0, published_madds_m=4_300.0, published_top1=82.7))  # fmt: skip
add_card(ModelCard("cswin-s", "2107.00652", params=34_643_304, macs=6_800_714_752,
                   published_params_m=35.0, published_madds_m=6_900.0, published_top1=83.6))  # fmt: skip
add_card(ModelCard("cswin-b", "2107.00652", params=77_382_184, macs=14_955_348_480,
                   published_params_m=78.0, published_madds_m=15_000.0, published_top1=84.2))  # fmt: skip
# L: ImageNet-22K pre-trained, fine-tuned on 1K. The paper's 31.5G is about 5% below the official code's count.
add_card(ModelCard("cswin-l", "2107.00652", params=173_262_664, macs=33_130_144_512,
                   published_params_m=173.0, published_madds_m=31_500.0, published_top1=86.5))  # fmt: skip

# The DeiT-style recipe of the paper (300 epochs, AdamW, lr 2e-3 for T/S and 1e-3 for B at batch 2048/1024,
# wd 0.05-0.1, 20 warm-up epochs, label smoothing 0.1), scaled to the quick budget; the wider B and L get
# a smaller rate, as in the paper (at 5e-4 their loss jumps within ten steps; tests/test_recipes.py).
for _variant in CONFIGS:
    add_recipe(Recipe("adamw", lr=5e-4 if _variant in ("cswin-t", "cswin-s") else 2e-4, weight_decay=0.05,
                      schedule="cosine", warmup=0.1, batch_size=64, train_images=50_000, label_smoothing=0.1,
                      source="CSWin's DeiT-style AdamW recipe (2107.00652 README), scaled"), _variant)
