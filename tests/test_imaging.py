"""Image-to-image networks of the watermark scenario (secbench.models.imaging)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
from torch import nn

from secbench.errors import SecbenchError
from secbench.models.flops import count_params
from secbench.models.imaging import (
    IMAGE_MODELS,
    DilatedResidualExtractor,
    PatchDiscriminator,
    ResNetGenerator,
    UNet,
)

# Small widths keep every forward pass in milliseconds on two CPU cores.
GENERATORS: dict[str, tuple[int, Callable[[], nn.Module]]] = {
    "unet-batch": (6, lambda: UNet(6, 3, width=8, depth=4, norm="batch")),
    "unet-instance": (6, lambda: UNet(6, 3, width=8, depth=4, norm="instance")),
    "unet-group": (6, lambda: UNet(6, 3, width=8, depth=4, norm="group")),
    "extractor": (3, lambda: DilatedResidualExtractor(3, 3, width=8)),
    "resnet": (3, lambda: ResNetGenerator(3, 3, width=4, n_blocks=2)),
    **{f"surrogate-{name}": (3, lambda b=build: b(3, 3, width=4)) for name, build in IMAGE_MODELS.items()},
}
SIGMOID_OUTPUT = [name for name in GENERATORS if name != "extractor"]  # the extractor ends in ReLU


@pytest.fixture(autouse=True)
def _seed_one_thread() -> Iterator[None]:
    # Nets this small gain nothing from intra-op threads, and on a loaded 2-core machine the threads'
    # barriers stall: the overfit test took 3-35 s with 2 threads and 0.7 s with 1.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("name", list(GENERATORS))
def test_generator_shape_and_range(name: str, size: int) -> None:
    in_channels, build = GENERATORS[name]
    out = build()(torch.rand(2, in_channels, size, size))
    assert out.shape == (2, 3, size, size)
    if name in SIGMOID_OUTPUT:
        assert out.min() >= 0 and out.max() <= 1
    else:
        assert out.min() >= 0  # final ReLU


@pytest.mark.parametrize("size", [32, 64])
def test_discriminator_patch_map(size: int) -> None:
    out = PatchDiscriminator(3, width=8)(torch.rand(2, 3, size, size))
    assert out.shape == (2, 1, size // 16, size // 16)


def test_unet_rejects_size_not_multiple_of_2_pow_depth() -> None:
    with pytest.raises(SecbenchError, match="multiples of 16"):
        UNet(3, 3, width=4, depth=4)(torch.rand(1, 3, 24, 24))


@pytest.mark.parametrize(
    "build, in_channels",
    [
        (lambda: UNet(6, 3, width=8, depth=4, norm="instance"), 6),
        (lambda: DilatedResidualExtractor(3, 3, width=8), 3),
        (lambda: ResNetGenerator(3, 3, width=4, n_blocks=2), 3),
        (lambda: PatchDiscriminator(3, width=8), 3),
    ],
    ids=["unet", "extractor", "resnet", "discriminator"],
)
def test_gradients_reach_every_parameter(build: Callable[[], nn.Module], in_channels: int) -> None:
    model = build()
    model(torch.rand(2, in_channels, 32, 32)).square().mean().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    first = next(model.parameters())
    assert first.grad.abs().sum() > 0  # the signal reaches the input layer through the whole net


@pytest.mark.parametrize(
    "build",
    [
        lambda: UNet(3, 3, width=8, depth=4, norm="instance"),
        lambda: UNet(3, 3, width=8, depth=4, norm="group"),
        lambda: DilatedResidualExtractor(3, 3, width=8),
        lambda: ResNetGenerator(3, 3, width=4, n_blocks=2, norm="group"),
    ],
    ids=["unet-instance", "unet-group", "extractor", "resnet-group"],
)
def test_no_running_stats_eval_equals_train(build: Callable[[], nn.Module]) -> None:
    model, x = build(), torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        train_out = model.train()(x)
        eval_out = model.eval()(x)
    torch.testing.assert_close(eval_out, train_out)


def test_batchnorm_eval_differs_from_train() -> None:
    """The contrast that makes the test above meaningful: BatchNorm's running stats change eval output."""
    model, x = UNet(3, 3, width=8, depth=4, norm="batch"), torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        train_out = model.train()(x)
        eval_out = model.eval()(x)
    assert not torch.allclose(eval_out, train_out, atol=1e-4)


def test_official_extractor_parameter_count() -> None:
    w, c = 128, 3
    conv3 = 9 * w * w  # a bias-free 3×3 conv at width w (its norm supplies the shift)
    norm = 2 * w  # InstanceNorm(affine=True): weight + bias
    stem = (9 * c * w + norm) + 2 * (conv3 + norm)  # 3→w, w→w, w→w (stride 2)       = 3,456 + 256 + 295,424
    blocks = 9 * 2 * (conv3 + norm)  # nine residual blocks of two conv+norm             = 2,658,816
    upsample = 16 * w * w + norm  # 4×4 transposed conv, bias-free, + norm               = 262,400
    conv = conv3 + norm  # 3×3 conv + norm                                              = 147,712
    head = w * c + c  # 1×1 conv to c channels, with bias (no norm after it)           = 387
    expected = stem + blocks + upsample + conv + head
    assert expected == 3_368_451  # the official HidingRes has 2·w more: biases on the two convs before a norm
    assert count_params(DilatedResidualExtractor(3, 3, width=128)) == expected


def test_tiny_unet_overfits_one_pair() -> None:
    # A smooth image (bilinear-upsampled 8×8 noise) and its mirror, kept off the sigmoid's saturated ends:
    # the flip needs the encoder/decoder path, not just the pixel-aligned skips.
    x = nn.functional.interpolate(torch.rand(1, 3, 8, 8), size=32, mode="bilinear", align_corners=False)
    y = 0.1 + 0.8 * x.flip(-1)
    model = UNet(3, 3, width=8, depth=3, norm="instance")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(100):
        loss = nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10
