"""CSWin Transformer: official parameter and MAC counts, any input size, and the stripe padding/clamping maths."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from secbench import registry
from secbench.errors import SecbenchError
from secbench.models.card import CARDS
from secbench.models.cswin import CONFIGS, CrossShapedAttention, CSWinTransformer, DropPath, StripeAttention
from secbench.models.flops import count_macs, count_params

VARIANTS = list(CONFIGS)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny() -> CSWinTransformer:
    """The one real-weight model of this module: CSWin-T at 1000 classes (reference conditions)."""
    torch.manual_seed(0)
    return registry.create_model("cswin-t", num_classes=1000).eval()


def _meta_model(variant: str) -> CSWinTransformer:
    """Built on the meta device: shapes only, no memory and no init, so even L (173M params) costs ~0.5 s."""
    with torch.device("meta"):
        return registry.create_model(variant, num_classes=1000)


@pytest.mark.parametrize("variant", VARIANTS)
def test_parameter_count_equals_the_official_code(variant: str) -> None:
    assert count_params(_meta_model(variant)) == CARDS[variant].params


def test_macs_at_224_match_the_official_code(tiny: CSWinTransformer) -> None:
    # Same conv/linear/matmul ops as the official model, so the count is exact, not just within ±2%.
    assert count_macs(tiny, 224) == CARDS["cswin-t"].macs


@pytest.mark.parametrize("variant", ["cswin-s", "cswin-b", "cswin-l"])
def test_macs_at_224_match_the_official_code_on_meta(variant: str) -> None:
    with torch.device("meta"):  # count_macs's input is created on the meta device too
        macs = count_macs(_meta_model(variant), 224)
    assert macs == pytest.approx(CARDS[variant].macs, rel=0.02)


@pytest.mark.parametrize("size", [(32, 32), (224, 224), (40, 72), (72, 20)])
def test_any_input_size_gives_logits_and_features(tiny: CSWinTransformer, size: tuple[int, int]) -> None:
    # 40x72 pads stage 2 (10x18 map, stripe 2 fits) and clamps stage 3 (5x9 map, stripe 7 > 5);
    # 72x20 pads stage 1 nowhere (stripe 1) but stage 2 (5 rows, stripe 2) and stage 3 (9 rows, stripe 7).
    batch = 1 if size == (224, 224) else 2
    x = torch.rand(batch, 3, *size)
    with torch.no_grad():
        logits, feats = tiny(x), tiny.features(x)
    assert logits.shape == (batch, 1000) and feats.shape == (batch, 512)
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(tiny.classifier(feats), logits)


def test_last_conv_is_the_final_norm_over_the_pooled_map(tiny: CSWinTransformer) -> None:
    maps: list[torch.Tensor] = []
    tiny.last_conv.register_forward_hook(lambda mod, inp, out: maps.append(out))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        feats = tiny.features(x)
    tiny.last_conv._forward_hooks.clear()
    assert isinstance(tiny.last_conv, nn.LayerNorm) and maps[0].shape == (2, 512, 1, 1)
    torch.testing.assert_close(maps[0].mean((2, 3)), feats)


def _reference_stripes(
    branch: StripeAttention, qkv: torch.Tensor, windows: list[tuple[slice, slice]]
) -> torch.Tensor:
    """Plain per-window attention + LePE on the unpadded map, one window (row slice, col slice) at a time.

    ``qkv``: ``(N, H, W, 3, C)`` → ``(N, H, W, C)``.
    """
    n, h, w, _, c = qkv.shape
    heads, out = branch.num_heads, torch.zeros(n, h, w, c)
    for rows, cols in windows:
        q, k, v = qkv[:, rows, cols].unbind(3)  # each (N, h', w', C)
        hh, ww = q.shape[1:3]
        split = [t.reshape(n, hh * ww, heads, c // heads).transpose(1, 2) for t in (q, k, v)]
        scores = split[0] @ split[1].transpose(-2, -1) / math.sqrt(c // heads)
        attn = (scores.softmax(-1) @ split[2]).transpose(1, 2).reshape(n, hh, ww, c)
        lepe = F.conv2d(v.permute(0, 3, 1, 2), branch.lepe.weight, branch.lepe.bias, padding=1, groups=c)
        out[:, rows, cols] = attn + lepe.permute(0, 2, 3, 1)
    return out


def _stripe_slices(extent: int, stripe: int) -> list[slice]:
    """Stripes of width ``stripe`` laid over ``[0, extent)`` with the padding split evenly, clipped to the map."""
    start = -((-extent % stripe) // 2)
    return [slice(max(s, 0), min(s + stripe, extent)) for s in range(start, extent, stripe)]


@pytest.mark.parametrize("axis", ["vertical", "horizontal"])
def test_padded_stripes_equal_ragged_stripes(axis: str) -> None:
    # 5x7 map, stripe 3: vertical pads 1 column each side, horizontal pads 1 row at the bottom. With the
    # padded keys masked, the result must equal attention within the ragged (clipped) edge stripes.
    torch.manual_seed(0)
    branch = StripeAttention(dim=4, num_heads=2, axis=axis, stripe=3)
    qkv = torch.randn(2, 5, 7, 3, 4)
    if axis == "vertical":
        windows = [(slice(None), cols) for cols in _stripe_slices(7, 3)]
    else:
        windows = [(rows, slice(None)) for rows in _stripe_slices(5, 3)]
    qkv.requires_grad_(True)
    out = branch(qkv)
    with torch.no_grad():
        torch.testing.assert_close(out, _reference_stripes(branch, qkv, windows))
    out.sum().backward()  # padding and the mask must not break or poison the gradient
    assert torch.isfinite(qkv.grad).all() and torch.isfinite(branch.lepe.weight.grad).all()


def test_stripes_wider_than_the_map_equal_global_attention() -> None:
    # Clamped stripes cover the whole 3x5 map, so the two half-head branches together are the official
    # last-stage block (one global branch, all heads) with the same weights.
    torch.manual_seed(0)
    cross, full = CrossShapedAttention(8, 4, stripe=7), CrossShapedAttention(8, 4, stripe=None)
    with torch.no_grad():
        full.qkv.load_state_dict(cross.qkv.state_dict())
        full.proj.load_state_dict(cross.proj.state_dict())
        full.branches[0].lepe.weight.copy_(torch.cat([b.lepe.weight for b in cross.branches]))
        full.branches[0].lepe.bias.copy_(torch.cat([b.lepe.bias for b in cross.branches]))
        x = torch.randn(2, 3, 5, 8)
        torch.testing.assert_close(cross(x), full(x))


def test_drop_path_rates_rise_linearly_to_the_official_rate() -> None:
    model = _meta_model("cswin-s")
    rates = [m.p for m in model.modules() if isinstance(m, DropPath)]
    assert len(rates) == sum(CONFIGS["cswin-s"].depths) and rates[0] == 0.0
    assert rates[-1] == pytest.approx(0.4)


def test_tiny_img_size_raises() -> None:
    with pytest.raises(SecbenchError, match="img_size >= 3"):
        registry.create_model("cswin-t", num_classes=10, img_size=2)
