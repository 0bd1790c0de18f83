"""Augmentation attacks: one shared transform per (input, target) pair, seeded, strict albumentations."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from attacks.augment import AUGMENTATIONS, A, PairAugmentation
from secbench.errors import UnknownNameError
from secbench.registry import create, list_names

ATTACKS = [n for n in AUGMENTATIONS if n != "aug-none"]
OFFSET = 40
# (weak options, strong options) per attack; the strong one must change the images more
STRENGTHS = {
    "aug-flip": ({"p": 0.0}, {"p": 1.0}),
    "aug-crop": ({"scale": (0.95, 1.0)}, {"scale": (0.3, 0.4)}),
    "aug-rotate": ({"degrees": 5.0}, {"degrees": 45.0}),
    "aug-resize": ({"scale": (0.9, 1.0)}, {"scale": (0.25, 0.3)}),
    "aug-jpeg": ({"quality": (95, 95)}, {"quality": (20, 20)}),
    "aug-noise": ({"std": (0.005, 0.005)}, {"std": (0.05, 0.05)}),
    "aug-blur": ({"sigma": (0.3, 0.3)}, {"sigma": (2.0, 2.0)}),
    "aug-combo": ({"scale": (0.95, 1.0), "degrees": 5.0, "flip_p": 0.0},
                  {"scale": (0.3, 0.4), "degrees": 45.0, "flip_p": 0.0}),
}


@pytest.fixture(scope="module")
def noisy() -> torch.Tensor:
    """uint8 (8, 3, 32, 32) i.i.d. pixels in [40, 175]: any misalignment shows, and +OFFSET never clips."""
    return torch.randint(40, 176, (8, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


@pytest.fixture(scope="module")
def smooth() -> torch.Tensor:
    """uint8 (8, 3, 32, 32) smooth images: pixel change grows with the displacement, unlike noise."""
    coarse = torch.rand(8, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    return (F.interpolate(coarse, size=32, mode="bilinear", align_corners=True) * 255).round().to(torch.uint8)


def _change(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().mean().item()


def test_registered_with_strength_overrides():
    assert list_names("attack", "aug-*") == sorted(AUGMENTATIONS)
    assert isinstance(create("attack", "aug-crop", scale=(0.9, 1.0), seed=3), PairAugmentation)
    with pytest.raises(UnknownNameError):
        create("attack", "aug-crop", degrees=10.0)


@pytest.mark.parametrize("name", AUGMENTATIONS)
def test_same_transform_on_input_and_target(name, noisy):
    out_in, out_tg = create("attack", name)(noisy, noisy)
    assert torch.equal(out_in, out_tg)
    # target = input + offset: every transform here is linear in the pixels (or, for geometry, moves
    # pixels without mixing in a border colour), so the offset survives, ±1 rounding, only if the
    # pair shared its parameters; with i.i.d. pixels a different crop/angle/noise draw would show
    out_in, out_tg = create("attack", name)(noisy, noisy + OFFSET)
    if name == "aug-jpeg":  # quantisation is not linear: the equal-pair check above is the test
        return
    assert ((out_tg.int() - out_in.int()) - OFFSET).abs().max() <= 1
    assert torch.equal(out_in, noisy) == (name == "aug-none")


@pytest.mark.parametrize("name", AUGMENTATIONS)
def test_shape_and_dtype_kept(name):
    x = torch.randint(0, 256, (3, 3, 24, 40), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    out_in, out_tg = create("attack", name)(x, x)
    assert out_in.shape == out_tg.shape == x.shape
    assert out_in.dtype == out_tg.dtype == torch.uint8


def test_aug_none_is_identity(noisy):
    out_in, out_tg = create("attack", "aug-none")(noisy, noisy + OFFSET)
    assert torch.equal(out_in, noisy) and torch.equal(out_tg, noisy + OFFSET)


@pytest.mark.parametrize("name", ATTACKS)
def test_seeded_per_pair_and_fresh_per_call(name, noisy):
    first = create("attack", name, seed=7)(noisy, noisy)[0]
    attack = create("attack", name, seed=7)
    assert torch.equal(attack(noisy, noisy)[0], first)  # same seed, same first batch
    assert not torch.equal(attack(noisy, noisy)[0], first)  # the next batch draws new parameters
    assert not torch.equal(create("attack", name, seed=8)(noisy, noisy)[0], first)
    same = noisy[:1].expand(8, -1, -1, -1).contiguous()
    out = create("attack", name)(same, same)[0]
    assert any(not torch.equal(out[0], o) for o in out[1:])  # each pair draws its own parameters


@pytest.mark.parametrize("name", ATTACKS)
def test_strength_options_change_the_result(name, smooth):
    weak, strong = STRENGTHS[name]
    weak_change = _change(create("attack", name, **weak)(smooth, smooth)[0], smooth)
    strong_change = _change(create("attack", name, **strong)(smooth, smooth)[0], smooth)
    assert strong_change > 1.5 * weak_change


@pytest.mark.parametrize("name", AUGMENTATIONS)
def test_every_pipeline_is_strict(name):
    # a strict Compose re-checks every transform's arguments (the test below shows it raising)
    compose = create("attack", name).compose((32, 32))
    assert compose.strict and not any(t.invalid_args for t in compose.transforms)


def test_wrong_albumentations_argument_raises(noisy):
    # a 1.x name: without strict=True albumentations only warns and uses its defaults
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        attack = PairAugmentation(lambda size: [A.GaussNoise(var_limit=(10.0, 50.0), p=1.0)], seed=0)
        with pytest.raises(ValueError, match="var_limit"):
            attack(noisy, noisy)
        with pytest.raises(ValueError, match="var_limit"):
            A.GaussNoise(var_limit=(10.0, 50.0), strict=True)


def test_rejects_mismatched_pairs(noisy):
    with pytest.raises(ValueError, match="uint8"):
        create("attack", "aug-flip")(noisy, noisy.float())
    with pytest.raises(ValueError, match="shape"):
        create("attack", "aug-flip")(noisy, noisy[:4])
