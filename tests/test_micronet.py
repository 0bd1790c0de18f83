"""MicroNet M0-M3 (2108.05894): official parameter and MAC counts, input sizes, and Dynamic Shift-Max."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from secbench import registry
from secbench.models.card import CARDS
from secbench.models.flops import count_macs, count_params
from secbench.models.micronet import DynamicShiftMax, MicroBlock

# architectures.md §5: measured on the official code at 1000 classes, 224×224, batch 1, eval mode;
# MACs = FlopCounterMode ÷ 2 (conv + linear).
OFFICIAL = {
    "micronet-m0": (1_019_590, 3_448_880),
    "micronet-m1": (1_777_587, 5_314_080),
    "micronet-m2": (2_393_876, 10_338_128),
    "micronet-m3": (2_622_960, 18_236_000),
}
NAMES = list(OFFICIAL)


pytestmark = pytest.mark.usefixtures("one_thread")


def _build(name: str, num_classes: int = 10, img_size: int = 224) -> nn.Module:
    """At 224 px by default: the ImageNet architecture the counts refer to (inputs <= 64 px get a stride-1 stem)."""
    torch.manual_seed(0)
    return registry.create_model(name, num_classes=num_classes, img_size=img_size)


@pytest.mark.parametrize("name", NAMES)
def test_counts_match_the_official_model(name: str) -> None:
    params, macs = OFFICIAL[name]
    model = _build(name, num_classes=1000)
    assert count_params(model) == params
    assert count_macs(model, 224) == pytest.approx(macs, rel=0.02)
    assert (CARDS[name].params, CARDS[name].macs) == (params, macs)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [(32, 32), (224, 224), (48, 64)])
def test_output_shape(name: str, size: tuple[int, int]) -> None:
    model = _build(name).eval()
    with torch.no_grad():
        logits = model(torch.rand(2, 3, *size))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", NAMES)
def test_train_mode_with_batch_two(name: str) -> None:
    """The head's BatchNorm1d needs at least two samples in train mode (batch 1 raises, as in the official code)."""
    model = _build(name).train()
    logits = model(torch.rand(2, 3, 32, 32))
    nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    assert logits.shape == (2, 10)
    with pytest.raises(ValueError, match="more than 1 value"):
        model(torch.rand(1, 3, 32, 32))


def _shifted(x: torch.Tensor, groups: int) -> torch.Tensor:
    """x₂ by the reference's index rule: channel (g, c) reads channel ((g + 1) mod G, (c + 1) mod C/G)."""
    per_group = x.shape[1] // groups
    index = [
        ((g + 1) % groups) * per_group + (c + 1) % per_group for g in range(groups) for c in range(per_group)
    ]
    return x[:, index]


@pytest.mark.parametrize(("k", "init_k2"), [(1, (1.0, 0.0)), (2, (1.0, 0.0)), (2, (0.5, 0.5))])
def test_dsm_at_initial_coefficients(k: int, init_k2: tuple[float, float]) -> None:
    """h = 0.5 (last hyper layer zeroed) leaves only the offsets: identity (K=1), max(x, a2·x + b2·x₂) (K=2)."""
    torch.manual_seed(0)
    dsm = DynamicShiftMax(12, k, reduction=4, groups=3, init_k2=init_k2)
    nn.init.zeros_(dsm.hyper[2].weight)
    nn.init.zeros_(dsm.hyper[2].bias)
    x = torch.randn(2, 12, 5, 4)
    a2, b2 = init_k2
    expected = x if k == 1 else torch.maximum(x, a2 * x + b2 * _shifted(x, 3))
    torch.testing.assert_close(dsm(x), expected)
    if init_k2 == (0.5, 0.5):  # the shift really fuses other channels: the output is not x
        assert not torch.allclose(dsm(x), x)


def test_residual_blocks_match_the_reference() -> None:
    """M3's identity shortcuts sit on blocks 3, 5, 8 and 10 (architectures.md §1.4); M0 has none."""
    blocks = [m for m in _build("micronet-m3").modules() if isinstance(m, MicroBlock)]
    assert [i for i, block in enumerate(blocks, 1) if block.residual] == [3, 5, 8, 10]
    assert not any(m.residual for m in _build("micronet-m0").modules() if isinstance(m, MicroBlock))
