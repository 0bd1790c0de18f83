"""Mobile-Former (arXiv 2108.05895): the authors' parameter and MAC counts, shapes, train mode, dynamic ReLU.

The generic model contract (normalisation first, ``features``/``classifier``/``last_conv``, backward to every
parameter at 32×32) is checked for every registered model in ``test_models.py``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from secbench import registry
from secbench.models.card import CARDS
from secbench.models.flops import count_macs, count_params
from secbench.models.mobile_former import DynamicReLU

# Measured on the authors' code at 1000 classes, 224×224, batch 1, eval (architectures.md §5):
# (params, MACs = FlopCounterMode ÷ 2). This implementation reproduces both exactly.
REFERENCE = {
    "mobile-former-26m": (3_232_788, 23_550_208),
    "mobile-former-52m": (3_469_092, 49_290_496),
    "mobile-former-96m": (4_585_252, 92_017_040),
    "mobile-former-151m": (7_595_828, 146_249_168),
    "mobile-former-214m": (9_425_920, 208_374_240),
    "mobile-former-294m": (11_422_648, 286_732_160),
    "mobile-former-508m": (13_976_976, 498_467_680),
}


pytestmark = pytest.mark.usefixtures("one_thread")


def _build(name: str, num_classes: int = 1000, img_size: int = 224) -> nn.Module:
    """At 224 px by default: the ImageNet architecture the counts refer to (inputs <= 64 px get a stride-1 stem)."""
    torch.manual_seed(0)
    return registry.create_model(name, num_classes=num_classes, img_size=img_size)


def test_all_seven_variants_are_registered() -> None:
    assert registry.list_names("model", "mobile-former-*") == sorted(REFERENCE)


@pytest.mark.parametrize("name", REFERENCE)
def test_counts_and_shapes_at_1000_classes(name: str) -> None:
    params, macs = REFERENCE[name]
    model = _build(name).eval()
    assert count_params(model) == params
    assert count_macs(model, 224) == pytest.approx(macs, rel=0.02)
    assert (CARDS[name].params, CARDS[name].macs) == (params, macs)
    with torch.no_grad():
        for batch, height, width in [(1, 224, 224), (2, 32, 32), (2, 48, 64)]:
            x = torch.rand(batch, 3, height, width)
            logits, feats = model(x), model.features(x)
            assert logits.shape == (batch, 1000)
            assert feats.shape == (batch, model.classifier.in_features)
            torch.testing.assert_close(model.classifier(feats), logits)


@pytest.mark.parametrize("name", ["mobile-former-26m", "mobile-former-508m"])
def test_train_mode_needs_and_takes_a_batch_of_two(name: str) -> None:
    model = _build(name, num_classes=10).train()
    loss = nn.functional.cross_entropy(model(torch.rand(2, 3, 48, 64)), torch.tensor([0, 1]))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    with pytest.raises(ValueError, match="more than 1 value per channel"):  # the head's BatchNorm1d
        model(torch.rand(1, 3, 32, 32))


def _dyrelu_with_fixed_coefficients(h1: float, h2: float, channels: int = 3) -> DynamicReLU:
    """A DynamicReLU whose hyper-net outputs ``h1`` for the first half and ``h2`` for the second, whatever the token."""
    act = DynamicReLU(channels, token_dim=8)
    last = act.hyper[2]
    nn.init.zeros_(last.weight)
    with torch.no_grad():  # hsigmoid(b) = b / 6 + 0.5
        last.bias.copy_(torch.tensor([6 * (h1 - 0.5)] * channels + [6 * (h2 - 0.5)] * channels))
    return act


def test_dynamic_relu_slopes() -> None:
    x, token = torch.randn(2, 3, 4, 5), torch.randn(2, 8)
    # h = 0.5 gives a1 = 1, a2 = 0: a plain ReLU (the initial state).
    torch.testing.assert_close(_dyrelu_with_fixed_coefficients(0.5, 0.5)(x, token), torch.relu(x))
    # h1 = 1, h2 = 0 give the extreme slopes a1 = 2, a2 = -1: max(2x, -x).
    torch.testing.assert_close(_dyrelu_with_fixed_coefficients(1.0, 0.0)(x, token), torch.maximum(2 * x, -x))
