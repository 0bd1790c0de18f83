"""DyHead (arXiv 2106.08322): the reference's parameter counts, shape preservation and the DCNv2 wiring."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import deform_conv2d

from secbench.models.dyhead import (
    DyHead,
    DyHeadBlock,
    DyReLU,
    ModulatedDeformConvGN,
    ScaleAttention,
    dyhead_block,
    modulated_deform_conv2d,
)
from secbench.models.flops import count_params


@dataclass(frozen=True)
class _DyHeadCard:
    """A ModelCard for a block that is not a classifier: parameter counts only (architectures.md §4.3, §5)."""

    paper: str
    channels: int
    block_params: int  # official: DCN with bias
    block_params_dcn_no_bias: int  # mmdetection's variant
    num_blocks: int
    head_params: int


CARD = _DyHeadCard(
    paper="2106.08322",
    channels=256,
    block_params=1_917_276,
    block_params_dcn_no_bias=1_916_508,
    num_blocks=6,
    head_params=11_503_656,
)

# (H, W) of each level, finest first: non-square, odd sizes included, each ceil-halved from the previous.
PYRAMID_5 = [(24, 40), (12, 20), (6, 10), (3, 5), (2, 3)]
PYRAMID_3 = [(13, 9), (7, 5), (4, 3)]


pytestmark = pytest.mark.usefixtures("one_thread")


def _pyramid(sizes: list[tuple[int, int]], channels: int, batch: int = 2) -> list[torch.Tensor]:
    return [torch.randn(batch, channels, h, w) for h, w in sizes]


def test_block_and_head_param_counts_match_the_reference() -> None:
    block = dyhead_block(CARD.channels)
    assert count_params(block) == CARD.block_params
    # the only difference from mmdetection's variant is the three DCN biases
    dcn_biases = sum(m.bias.numel() for m in block.modules() if isinstance(m, ModulatedDeformConvGN))
    assert count_params(block) - dcn_biases == CARD.block_params_dcn_no_bias
    assert count_params(DyHead(CARD.num_blocks, CARD.channels)) == CARD.head_params


@pytest.mark.parametrize("sizes", [PYRAMID_5, PYRAMID_3], ids=["5-levels", "3-levels"])
def test_every_level_keeps_its_shape(sizes: list[tuple[int, int]]) -> None:
    torch.manual_seed(0)
    head = DyHead(num_blocks=2, channels=32).eval()
    features = _pyramid(sizes, 32)
    with torch.no_grad():
        out = head(features)
    assert [o.shape for o in out] == [f.shape for f in features]


def test_official_width_output_is_finite() -> None:
    torch.manual_seed(0)
    block = DyHeadBlock(CARD.channels).eval()
    features = [10 * f for f in _pyramid(PYRAMID_3, CARD.channels)]
    with torch.no_grad():
        out = block(features)
    assert all(torch.isfinite(o).all() for o in out)


@pytest.mark.parametrize("stride", [1, 2])
def test_dcn_with_zero_offsets_and_unit_mask_is_a_plain_conv(stride: int) -> None:
    torch.manual_seed(0)
    dcn = ModulatedDeformConvGN(16, stride=stride)
    torch.nn.init.normal_(dcn.bias)  # a non-zero bias must be added too
    x = torch.randn(2, 16, 9, 7)
    expected = dcn.norm(F.conv2d(x, dcn.weight, dcn.bias, stride=stride, padding=1))
    offset = torch.zeros(2, 18, *expected.shape[-2:])
    mask = torch.ones(2, 9, *expected.shape[-2:])
    torch.testing.assert_close(dcn(x, offset, mask), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("size", "stride"), [((9, 7), 1), ((9, 7), 2), ((1, 1), 1), ((2, 3), 2)])
def test_cpu_dcn_equals_torchvision_forward_and_gradients(size: tuple[int, int], stride: int) -> None:
    # offsets of a few pixels send many points off the map, where both must read zeros
    g = torch.Generator().manual_seed(0)
    h, w = size
    ho, wo = -(-h // stride), -(-w // stride)
    x, offset = torch.randn(2, 16, h, w, generator=g), 3 * torch.randn(2, 18, ho, wo, generator=g)
    mask, weight, bias = torch.rand(2, 9, ho, wo, generator=g), torch.randn(8, 16, 3, 3, generator=g), torch.randn(8)
    inputs = [t.double().requires_grad_() for t in (x, offset, mask, weight, bias)]
    upstream = torch.randn(2, 8, ho, wo, generator=g).double()
    ours = modulated_deform_conv2d(*inputs, stride=stride)
    theirs = deform_conv2d(inputs[0], inputs[1], inputs[3], inputs[4], stride=stride, padding=1, mask=inputs[2])
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-10)
    for a, b in zip(torch.autograd.grad((ours * upstream).sum(), inputs),
                    torch.autograd.grad((theirs * upstream).sum(), inputs), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    assert float(ours.abs().max()) > 1  # not two zero maps


def test_block_wiring_with_zero_offsets_and_unit_mask() -> None:
    """Middle level of a 3-level pyramid, recomputed with plain convs: checks the offset/mask channel split,
    which conv sees which level, the upsampling and the scale and task attentions."""
    torch.manual_seed(0)
    block = DyHeadBlock(16).eval()
    with torch.no_grad():
        block.offset.bias[18:] = 30.0  # mask logits: sigmoid(30) == 1 in float32; offsets stay 0
        for dcn in (block.dcn_same, block.dcn_finer, block.dcn_coarser):
            dcn.bias.normal_()  # without a bias, GroupNorm would hide a wrong mask scale
    finer, mid, coarser = _pyramid(PYRAMID_3, 16)

    def conv(dcn: ModulatedDeformConvGN, x: torch.Tensor) -> torch.Tensor:
        return dcn.norm(F.conv2d(x, dcn.weight, dcn.bias, stride=dcn.stride, padding=1))

    up = F.interpolate(coarser, size=mid.shape[-2:], mode="bilinear", align_corners=True)
    terms = [conv(block.dcn_same, mid), conv(block.dcn_finer, finer), conv(block.dcn_coarser, up)]
    fused = sum(block.scale_attention(t) * t for t in terms) / 3
    with torch.no_grad():
        out = block([finer, mid, coarser])[1]
        expected = block.task_attention(fused)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


def test_scale_attention_applies_relu_before_the_hard_sigmoid() -> None:
    """The official order: weights lie in [0.5, 1] (the paper's hard sigmoid alone would reach 0)."""
    attention = ScaleAttention(16)
    x = torch.randn(2, 16, 5, 4)
    with torch.no_grad():
        attention.fc.bias.fill_(-10.0)
        torch.testing.assert_close(attention(x), torch.full((2, 1, 1, 1), 0.5))
        attention.fc.bias.fill_(10.0)
        torch.testing.assert_close(attention(x), torch.ones(2, 1, 1, 1))


def test_dyrelu_coefficients() -> None:
    """Constant hard-sigmoid outputs h = (a1, b1, a2, b2) per channel give max(a1·x + b1, a2·x + b2) after the
    official centring; h = 0.5 everywhere is a plain ReLU."""
    dyrelu = DyReLU(16)
    x = torch.randn(2, 16, 5, 4)
    last = dyrelu.fc[2]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()  # hardsigmoid(0) = 0.5
        torch.testing.assert_close(dyrelu(x), F.relu(x))
        h = torch.tensor([0.75, 0.6, 0.25, 0.3]).repeat_interleave(16)  # a1, b1, a2, b2 blocks of C
        last.bias.copy_(6 * (h - 0.5))  # hardsigmoid(6(h - 0.5)) = h
        torch.testing.assert_close(dyrelu(x), torch.maximum(1.5 * x + 0.1, -0.5 * x - 0.2))


def test_gradients_reach_offsets_and_mask() -> None:
    torch.manual_seed(0)
    block = DyHeadBlock(16)
    out = block(_pyramid(PYRAMID_3, 16))
    sum(o.square().mean() for o in out).backward()
    grad = block.offset.weight.grad
    assert grad is not None and torch.isfinite(grad).all()
    assert grad[:18].abs().sum() > 0  # offsets (the conv starts at zero, so only gradients can move it)
    assert grad[18:].abs().sum() > 0  # mask logits


def test_inconsistent_pyramid_is_rejected() -> None:
    block = DyHeadBlock(16)
    with pytest.raises(ValueError, match="ceil"):
        block(_pyramid([(12, 20), (5, 10)], 16))
    with pytest.raises(ValueError, match="expected shape"):
        block(_pyramid([(12, 20)], 32))
