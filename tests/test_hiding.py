"""secbench.hiding: interference layer, marks, NC on inks, and that H + R learn to hide a logo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from secbench.data import load_dataset
from secbench.errors import SecbenchError, UnknownNameError
from secbench.hiding import (
    BLANK,
    HidingConfig,
    HidingNets,
    Interference,
    LogoMark,
    StructureMark,
    build_hiding_nets,
    logo,
    mark_amplitude,
    mark_nc,
    train_hiding,
    tune_extractor,
)
from secbench.hiding.interference import Transform
from secbench.imageops import edge_mask
from secbench.metrics import auroc, normalized_correlation
from secbench.models.imaging import DilatedResidualExtractor, UNet


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def _theta(*rows: list[float]) -> torch.Tensor:
    return torch.tensor([rows], dtype=torch.float32)


def test_affine_transforms_are_exact_flips_and_quarter_turns(images):
    x = images[:1]
    assert torch.allclose(Transform(_theta([1, 0, 0], [0, 1, 0]), None, 0.0)(x), x, atol=1e-6)
    assert torch.allclose(Transform(_theta([-1, 0, 0], [0, 1, 0]), None, 0.0)(x), x.flip(-1), atol=1e-6)
    assert torch.allclose(Transform(_theta([1, 0, 0], [0, -1, 0]), None, 0.0)(x), x.flip(-2), atol=1e-6)
    # output (u, v) samples input (-v, u): a quarter turn
    assert torch.allclose(Transform(_theta([0, -1, 0], [1, 0, 0]), None, 0.0)(x), x.rot90(1, (-2, -1)), atol=1e-5)


def test_one_draw_moves_several_batches_identically(images):
    transform = Interference().sample(6, ("rotate", "crop", "resize", "flip"), torch.Generator().manual_seed(1))
    both = transform(torch.cat([images, images.flip(1)], 1))
    assert torch.allclose(both[:, :3], transform(images), atol=1e-6)
    assert torch.allclose(both[:, 3:], transform(images.flip(1)), atol=1e-6)


def test_sampled_flips_only_flip_and_crops_stay_inside(images):
    interference = Interference(crop_area=(0.25, 0.5))
    flips = interference.sample(6, ("flip",), torch.Generator().manual_seed(2))
    out = flips(images)
    for x, y in zip(images, out, strict=True):
        assert any(torch.allclose(y, c, atol=1e-6) for c in (x, x.flip(-1), x.flip(-2), x.flip(-1).flip(-2)))
    crop = interference.sample(200, ("crop",), torch.Generator().manual_seed(3)).theta
    side = crop[:, 0, 0]
    assert torch.all((side >= 0.5 - 1e-6) & (side <= 0.71))  # sqrt of the area range
    assert torch.all(crop[:, :, 2].abs() <= (1 - side)[:, None] + 1e-6)


def test_interference_is_differentiable_and_rejects_unknown_ops(images):
    x = images.clone().requires_grad_(True)
    Interference().sample(6, ("rotate", "resize"), torch.Generator().manual_seed(4))(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(UnknownNameError, match="unknown interference 'shear'"):
        Interference().sample(2, ("shear",), torch.Generator())


def test_noise_goes_to_the_marked_image_only(images):
    transform = Interference(noise_sigma=0.05).sample(6, ("noise",), torch.Generator().manual_seed(5))
    assert torch.equal(transform(images), images)
    noisy = transform.noisy(images, torch.Generator().manual_seed(6))
    assert 0.04 < (noisy - images).std().item() < 0.06


def test_structure_mark_paints_the_key_on_edges_only():
    image = torch.zeros(1, 3, 16, 16)
    image[..., 8:] = 1.0  # a vertical step: edges on the two columns beside it
    mark = StructureMark((0.9, 0.2, 0.1))
    key = mark.sample_key(1, torch.Generator())
    expected = mark.expected(image, key)
    edges = edge_mask(image)[0, 0]
    assert edges[:, 7:9].all() and edges.sum() == 32
    assert torch.allclose(expected[0, :, edges], torch.tensor([0.9, 0.2, 0.1])[:, None].expand(3, 32))
    assert torch.all(expected[0, :, ~edges] == BLANK)
    assert torch.equal(mark.weights(image)[0, 0], 1 + 12 * edges.float())


def test_structure_mark_without_colour_draws_poison_ink_palette():
    keys = StructureMark(None).sample_key(500, torch.Generator().manual_seed(0))
    assert set(torch.unique((keys * 255).round()).tolist()) == {40.0, 80.0, 120.0, 160.0, 200.0}


def test_mark_nc_compares_inks():
    ink = logo(16)[None]
    assert mark_nc(ink, ink).item() == pytest.approx(1.0)
    assert mark_nc(torch.ones_like(ink), ink).item() == 0.0  # a blank reading is no evidence
    # the plain NC of a blank and the logo is high: why inks are compared instead
    assert normalized_correlation(torch.ones_like(ink), ink).item() > 0.8
    assert mark_nc(ink * 0.5 + 0.5, ink).item() == pytest.approx(1.0)  # a fainter copy of the same ink


def test_amplitude_tells_the_mark_from_a_faint_echo_that_nc_accepts():
    from defenses.watermark.owner import Reading

    mark = logo(16)[None]
    echo = BLANK - 0.05 * (BLANK - mark)  # the mark's ink at a twentieth of its strength
    readings = torch.cat([mark, echo, torch.ones_like(mark)])
    expected = mark.expand_as(readings)
    amplitude = mark_amplitude(readings, expected)
    assert amplitude.tolist() == pytest.approx([1.0, 0.05, 0.0])
    assert mark_amplitude(mark, torch.ones_like(mark)).item() == 0.0  # no ink expected: no strength
    reading = Reading(mark_nc(readings, expected), amplitude)
    assert reading.detected(0.95).tolist() == [True, True, False]  # the papers' rule takes the echo for the mark
    assert reading.detected(0.95, min_amplitude=0.5).tolist() == [True, False, False]


def test_generated_logo_and_png_watermark(tmp_path: Path):
    generated = logo(32)
    inked = (generated < 0.9).float().mean().item()
    assert generated.shape == (3, 32, 32) and 0.2 < inked < 0.6
    picture = np.zeros((20, 30, 3), dtype=np.uint8)
    picture[:, :15] = 255
    Image.fromarray(picture).save(tmp_path / "mark.png")
    loaded = logo(16, tmp_path / "mark.png")
    assert loaded.shape == (3, 16, 16) and loaded[:, :, :7].min() > 0.95 and loaded[:, :, 9:].max() < 0.05
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(SecbenchError, match="not a readable image"):
        logo(16, tmp_path / "bad.png")


def test_fidelity_ramp_and_incremental_stages():
    cfg = HidingConfig(steps=9, fidelity=(0.1, 10.0), stages=(("rotate",), ("rotate", "crop"), ("flip",)))
    assert cfg.fidelity_at(0) == pytest.approx(0.1) and cfg.fidelity_at(8) == pytest.approx(10.0)
    assert cfg.fidelity_at(4) == pytest.approx(1.0)
    assert [cfg.ops_at(s) for s in (0, 2, 3, 5, 6, 8)] == [("rotate",)] * 2 + [("rotate", "crop")] * 2 + [("flip",)] * 2
    with pytest.raises(ValueError, match="even batch_size"):
        HidingConfig(steps=1, batch_size=3)


def test_embedder_and_extractor_learn_to_hide_a_logo(one_thread):
    """A few hundred steps on tiny nets: R reads the logo in H's outputs and not in clean covers."""
    torch.manual_seed(0)
    covers = torch.rand(64, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 0.6 + 0.2
    mark = LogoMark(logo(16))
    nets = HidingNets(UNet(6, 3, width=8, depth=4, norm="instance"), DilatedResidualExtractor(3, 3, width=8,
                                                                                           dilations=(2, 1)))
    cfg = HidingConfig(steps=150, batch_size=16, lr=2e-3, fidelity=(0.05, 0.5))
    history = train_hiding(nets, covers, mark, cfg, generator=torch.Generator().manual_seed(2),
                           device=torch.device("cpu"))
    assert history["extract_loss"][-1] < history["extract_loss"][0] / 3
    key = mark.sample_key(64, torch.Generator())
    with torch.no_grad():
        marked = nets.embed(covers, mark, key)
        on_marked = mark_nc(nets.extractor(marked), mark.expected(marked, key))
        on_clean = mark_nc(nets.extractor(covers), mark.expected(covers, key))
    assert on_marked.mean() > 0.8 and on_clean.mean() < 0.5
    # stage 2 on its own outputs keeps the reading
    tune_extractor(nets.extractor, [marked], [covers], [covers], mark, HidingConfig(steps=10, batch_size=16, lr=1e-4),
                   generator=torch.Generator().manual_seed(3), device=torch.device("cpu"))
    with torch.no_grad():
        assert mark_nc(nets.extractor(marked), mark.expected(marked, key)).mean() > 0.8


def test_structure_mark_is_learnt_on_a_tiny_budget(one_thread):
    """The watermark's quick core (bounded H, linear R, soft target) on photo patches: after 300 steps
    R reads the mark in held-out marked patches and much less of it in the same patches unmarked."""
    splits = load_dataset("patches", seed=0, n_train=96, n_test=64, patch_size=16)
    torch.manual_seed(0)
    # a loose bound (20 dB) and no fidelity term: separation within seconds, the mechanism unchanged
    nets = build_hiding_nets(width=8, depth=3, extractor_width=8, dilations=(2, 1), residual="bounded", min_psnr=20,
                             edge_focus=0.8, extractor_output="linear", discriminator=False)
    mark = StructureMark((240 / 255, 120 / 255, 20 / 255), target="soft")
    cfg = HidingConfig(steps=300, batch_size=16, lr=2e-3, fidelity=(1e-3, 1e-3))
    train_hiding(nets, splits.train.floats(), mark, cfg, generator=torch.Generator().manual_seed(1),
                 device=torch.device("cpu"))
    test = splits.test.floats()
    key = mark.sample_key(len(test), torch.Generator())
    with torch.no_grad():
        on_marked = mark_nc(nets.extractor(nets.embed(test, mark, key).clamp(0, 1)), mark.expected(test, key))
        on_clean = mark_nc(nets.extractor(test), mark.expected(test, key))
    assert auroc(on_marked, on_clean) > 0.9  # measured 0.985
    assert on_marked.mean() > on_clean.mean() + 0.15  # 0.93 against 0.63


def test_soft_structure_paints_edge_strength_and_weights_it():
    image = torch.zeros(1, 3, 16, 16)
    image[..., 8:] = 1.0
    soft = StructureMark((0.9, 0.2, 0.1), target="soft")
    strength = soft.structure(image)[0, 0]
    # the step's two columns have magnitude 255/√2 ≈ 180: m / (m + 28) ≈ 0.866 there, 0 elsewhere;
    # the 3×3 average spreads it to 2/3 of that on those columns and 1/3 on their neighbours
    edge = 180.31 / (180.31 + 28)
    assert strength[:, 7:9] == pytest.approx(torch.full((16, 2), 2 * edge / 3), abs=1e-3)
    assert strength[:, 6] == pytest.approx(torch.full((16,), edge / 3), abs=1e-3)
    assert strength[:, :5].abs().max() == 0 and strength[:, 11:].abs().max() == 0
    expected = soft.expected(image, soft.sample_key(1, torch.Generator()))
    assert expected[0, 0, 0, 7].item() == pytest.approx(2 * edge / 3 * 0.9 + 1 - 2 * edge / 3, abs=1e-3)
    assert torch.allclose(soft.weights(image)[0, 0], 1 + 12 * strength)
    with pytest.raises(UnknownNameError, match="unknown structure target 'dotted'"):
        StructureMark(None, target="dotted")


@pytest.mark.parametrize("target", ["binary", "soft"])
def test_structure_target_follows_quarter_turns_flips_and_crops(images, target):
    """The expected mark of a transformed image is the transformed mark: what lets it survive a thief's
    rotations and crops. Exact for quarter turns and flips; for a crop, away from the crop's border."""
    mark = StructureMark((0.9, 0.2, 0.1), target=target)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    key = mark.sample_key(2, torch.Generator())
    quarter = Transform(_theta([0, -1, 0], [1, 0, 0]).expand(2, 2, 3), None, 0.0)
    flip = Transform(_theta([-1, 0, 0], [0, 1, 0]).expand(2, 2, 3), None, 0.0)
    for turn in (quarter, flip):
        assert torch.allclose(mark.expected(turn(x), key), turn(mark.expected(x, key)), atol=1e-4)
    cropped = x[..., 4:28, 6:30]
    assert torch.allclose(mark.expected(cropped, key)[..., 2:-2, 2:-2],
                          mark.expected(x, key)[..., 6:26, 8:28], atol=1e-6)


def test_bounded_residual_never_exceeds_its_bound():
    from secbench.hiding import BoundedResidual
    from secbench.metrics import psnr

    class Wild(torch.nn.Module):  # an embedder that writes ±100 everywhere: only the bound holds it
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 100 * torch.randn(len(x), 3, *x.shape[-2:], generator=torch.Generator().manual_seed(0))

    covers = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    for focus in (0.0, 0.8):
        embedder = BoundedResidual(Wild(), min_psnr=36.0, edge_focus=focus)
        marked = embedder(torch.cat([covers, torch.ones_like(covers)], 1))
        residual = marked - covers
        assert residual.square().mean((1, 2, 3)).max().item() <= embedder.bound**2 * (1 + 1e-5)
        assert psnr(marked.clamp(0, 1), covers).min().item() >= 36.0 - 1e-3
        assert torch.all(residual.abs() <= embedder.bound * embedder.spread(covers) + 1e-7)
    step = torch.zeros(1, 3, 16, 16)
    step[..., 8:] = 1.0
    spread = BoundedResidual(Wild(), min_psnr=36.0, edge_focus=0.8).spread(step)[0, 0]
    # the budget goes to the structure: share 0.2 + 0.8 × soft strength on the step's columns, 0.2 far off
    assert (spread[0, 7] / spread[0, 0]).item() == pytest.approx((0.2 + 0.8 * 2 / 3 * 180.31 / 208.31) / 0.2,
                                                                 rel=1e-3)
