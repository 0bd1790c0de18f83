"""Contract tests for every registered model (new models are tested for free), plus known parameter counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from secbench import registry
from secbench.errors import SecbenchError, UnknownNameError
from secbench.models.layers import Normalize

MODELS = registry.list_names("model")
MEAN, STD = (0.1, 0.2, 0.3), (0.3, 0.2, 0.1)
LARGE_PARAMS = 30_000_000  # above this, only 32×32 inputs are tested (builds take seconds)

# Reference implementations' counts for 10 classes: kuangliu/pytorch-cifar ResNet18 and PreActResNet18
# (= BackdoorBench's), torchvision's mobilenet_v3_small with a 10-way head; cnn-s is secbench's own.
KNOWN_PARAMS = {
    "resnet18": 11_173_962,
    "preact-resnet18": 11_171_146,
    "mobilenet-v3-small": 1_528_106,
    "cnn-s": 98_970,
}


pytestmark = pytest.mark.usefixtures("one_thread")


def _build(name: str, num_classes: int = 10, img_size: int = 32) -> nn.Module:
    torch.manual_seed(0)
    return registry.create_model(name, num_classes=num_classes, img_size=img_size, mean=MEAN, std=STD)


@pytest.fixture(scope="module", params=MODELS)
def name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def model(name: str) -> nn.Module:
    """One 10-class 32×32 build per model, shared by its tests (pytest groups them, so one lives at a time)."""
    return _build(name)


def _check_forward(model: nn.Module, num_classes: int, img_size: int) -> None:
    model.eval()
    x = torch.rand(2, 3, img_size, img_size)
    with torch.no_grad():
        logits, feats = model(x), model.features(x)
    assert logits.shape == (2, num_classes)
    assert isinstance(model.classifier, nn.Linear) and model.classifier.out_features == num_classes
    assert feats.shape == (2, model.classifier.in_features)
    # features really are the penultimate activations: the classifier alone turns them into the logits
    torch.testing.assert_close(model.classifier(feats), logits)


def test_forward_shapes_and_features(model: nn.Module) -> None:
    _check_forward(model, num_classes=10, img_size=32)


@pytest.mark.parametrize(("num_classes", "img_size"), [(43, 32), (10, 16), (43, 64)])
def test_other_class_counts_and_input_sizes(
    name: str, model: nn.Module, num_classes: int, img_size: int
) -> None:
    if img_size != 32 and sum(p.numel() for p in model.parameters()) > LARGE_PARAMS:
        pytest.skip("large model: each extra build takes seconds; 32×32 is tested")
    _check_forward(_build(name, num_classes, img_size), num_classes, img_size)


def test_outputs_finite_over_the_input_range(model: nn.Module) -> None:
    x = torch.stack([torch.zeros(3, 32, 32), torch.ones(3, 32, 32), torch.rand(3, 32, 32)])
    with torch.no_grad():
        assert torch.isfinite(model.eval()(x)).all()


def test_backward_reaches_every_parameter(model: nn.Module) -> None:
    model.train().zero_grad()
    loss = nn.functional.cross_entropy(model(torch.rand(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(param.grad).all(), pname


def test_normalize_is_the_first_op(model: nn.Module) -> None:
    norms = [m for m in model.modules() if isinstance(m, Normalize)]
    assert len(norms) == 1
    assert norms[0].mean.shape == norms[0].std.shape == (1, 3, 1, 1)
    torch.testing.assert_close(norms[0].mean.flatten(), torch.tensor(MEAN))
    torch.testing.assert_close(norms[0].std.flatten(), torch.tensor(STD))
    assert any(key.endswith("mean") for key in model.state_dict())  # saved with the weights

    called: list[nn.Module] = []
    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_pre_hook(lambda mod, _: called.append(mod)) for m in leaves]
    with torch.no_grad():
        model.eval()(torch.rand(1, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    assert called[0] is norms[0]


def test_last_conv_is_a_submodule_with_a_feature_map(model: nn.Module) -> None:
    assert any(m is model.last_conv for m in model.modules())
    shapes: list[torch.Size] = []
    hook = model.last_conv.register_forward_hook(lambda mod, inp, out: shapes.append(out.shape))
    with torch.no_grad():
        model.eval()(torch.rand(2, 3, 32, 32))
    hook.remove()
    assert len(shapes) == 1 and len(shapes[0]) == 4 and shapes[0][0] == 2


def test_eval_mode_is_deterministic(model: nn.Module) -> None:
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), model(x))


def test_parameter_count(name: str, model: nn.Module) -> None:
    if name not in KNOWN_PARAMS:
        pytest.skip(f"no reference parameter count for {name}")
    assert sum(p.numel() for p in model.parameters()) == KNOWN_PARAMS[name]


def test_mobilenet_small_input_adaptations() -> None:
    small, large = _build("mobilenet-v3-small", img_size=64), _build("mobilenet-v3-small", img_size=96)
    assert small.stages[0][0].stride == (1, 1)
    assert large.stages[0][0].stride == (2, 2)
    # torchvision's BN momentum 0.01 leaves running statistics unusable after a few hundred steps
    assert {m.momentum for m in small.modules() if isinstance(m, nn.BatchNorm2d)} == {0.1}


def test_unknown_model_name_raises() -> None:
    with pytest.raises(UnknownNameError, match="resnet18"):
        registry.create_model("resnet-18", num_classes=10)


def test_unknown_model_option_raises() -> None:
    with pytest.raises(UnknownNameError, match="depth"):
        registry.create_model("cnn-s", num_classes=10, depth=3)


def test_cnn_s_rejects_inputs_too_small_for_its_pools() -> None:
    with pytest.raises(SecbenchError, match="img_size >= 8"):
        registry.create_model("cnn-s", num_classes=10, img_size=4)


def test_normalize_rejects_bad_statistics() -> None:
    with pytest.raises(ValueError, match="one value per channel"):
        Normalize((0.5, 0.5), (0.25, 0.25, 0.25))
    with pytest.raises(ValueError, match="positive"):
        Normalize((0.5,), (0.0,))


def test_engine_preparation_keeps_the_function(name: str) -> None:
    """The engine moves every model to channels_last convolutions; the outputs must not change."""
    from secbench.engine import prepare_model

    reference = _build(name).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = reference(x)
        prepared = prepare_model(reference, torch.device("cpu"))
        got = prepared(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
