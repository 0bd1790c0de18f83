"""The watermark scenario end to end at smoke, the thief's removal attacks, and the config's checks."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from attacks.surrogate import build_surrogate, train_image_model
from defenses.watermark.owner import _nets
from secbench import store
from secbench.cli import cli
from secbench.errors import SecbenchError
from secbench.imageops import to_uint8
from secbench.registry import create
from secbench.scenarios.watermark import (
    Watermark,
    WatermarkConfig,
    structure_key,
    task_data,
    verification_queries,
)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["run", "watermark", "--preset", "smoke", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """baseline under two attacks, then the none control: one owner training per method, reused."""
    out = tmp_path_factory.mktemp("wm")
    code, stdout, stderr = run("--method", "baseline", "--attack", "crop,none", "--out", str(out))
    assert code == 0, stderr
    code, _, stderr = run("--method", "none", "--attack", "prune", "--out", str(out))
    assert code == 0, stderr
    return out


def test_smoke_records_every_metric_in_range(smoke: Path) -> None:
    records = {(r["method"], r["attack"]): r for r in store.load_records(smoke)}
    assert set(records) == {("baseline", "crop"), ("baseline", "none"), ("none", "prune")}
    assert all(r["status"] == "ok" and r["model"] == "unet" and r["dataset"] == "patches/derain"
               for r in records.values())
    baseline = records["baseline", "crop"]["metrics"]
    for name in ("wm_success", "wm_auroc", "fp_clean_model", "fp_natural", "api_success", "ssim_wm", "wm_success_nc",
                 "fp_clean_model_nc", "fp_natural_nc"):
        assert 0 <= baseline[name] <= 1, name
    # the owner's rule adds a condition to the papers' NC rule: it can only call fewer images marked
    assert baseline["wm_success"] <= baseline["wm_success_nc"] and baseline["fp_natural"] <= baseline["fp_natural_nc"]
    assert -1 <= baseline["wm_nc"] <= 1 and 5 < baseline["psnr_wm"] < 100 and baseline["surrogate_psnr"] > 5
    control = records["none", "prune"]["metrics"]
    assert {"fp_surrogate_baseline", "fp_surrogate_structure"} <= set(control) and "psnr_wm" not in control
    assert control["wm_success"] == max(control["fp_surrogate_baseline"], control["fp_surrogate_structure"])
    # the key the control's structure mark was trained with is recorded; a baseline run has none
    assert re.fullmatch(r"#[0-9a-f]{6}", records["none", "prune"]["derived"]["structure_key"])
    assert "structure_key" not in records["baseline", "crop"]["derived"]
    assert records["baseline", "crop"]["higher_is_better"]["fp_natural"] is False


def test_owner_networks_are_trained_once_and_reused(smoke: Path) -> None:
    records = store.load_records(smoke)
    cached = [r["derived"]["owner_cached"] for r in records]
    assert cached == [False, True, False]  # the control trained structure; its baseline came from the cache
    assert len(list((smoke / "cache").glob("watermark-baseline-owner-*"))) == 1


def test_each_run_writes_its_example_grid_and_ncs(smoke: Path) -> None:
    for record in store.load_records(smoke):
        folder = smoke / record["artifacts"]
        assert (folder / "examples.png").stat().st_size > 1000
        readings = json.loads((folder / "nc.json").read_text())
        assert {name: len(readings[name]["nc"]) for name in readings} == {"suspect": 16, "clean_model": 16,
                                                                           "natural": 16} == {
            name: len(readings[name]["amplitude"]) for name in readings}
        assert record["n"] == 16


def test_report_shows_method_by_attack_success(smoke: Path) -> None:
    result = CliRunner().invoke(cli, ["report", str(smoke), "--scenario", "watermark", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    tables = {t["table"]: t for t in json.loads(result.stdout)}
    success = tables["watermark success rate on the surrogate's outputs (NC ≥ threshold and amplitude ≥ "
                     "--min-amplitude)"]
    assert "the papers' rule, NC ≥ threshold alone: success on the surrogate's outputs" in tables
    assert (success["rows"], success["cols"]) == (["method"], "attack")
    assert {(c["method"], c["attack"]) for c in success["cells"]} >= {("baseline", "crop"), ("none", "prune")}


def test_same_seed_same_numbers(smoke: Path, tmp_path: Path) -> None:
    code, _, stderr = run("--method", "baseline", "--attack", "crop,none", "--out", str(tmp_path))
    assert code == 0, stderr
    again = {r["attack"]: r["metrics"] for r in store.load_records(tmp_path)}
    first = {r["attack"]: r["metrics"] for r in store.load_records(smoke) if r["method"] == "baseline"}
    assert again == first


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--attack", "shear"], "unknown watermark attack 'shear'"),
        (["--method", "strucutre"], "did you mean 'structure'"),
        (["--key", "green"], "--key is auto or a hex colour"),
        (["--attack-options", "degrees"], "--attack-options takes name=value pairs"),
        (["--patch-size", "24"], "multiple of 16"),
        (["--surrogate", "vgg"], "unknown surrogate 'vgg'"),
        (["--extractor-output", "tanh"], "unknown extractor output 'tanh'"),
        (["--owner-attacks", "none,prune"], "unknown owner's surrogate augmentation 'prune'"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    code, _, stderr = run(*args, "--out", str(tmp_path))
    assert code == 2 and stderr.count("\n") == 1 and message in stderr, stderr


def test_attack_options_parse_to_keyword_arguments() -> None:
    cfg = WatermarkConfig(attack="combo", attack_options="degrees=30, scale=0.5:0.9")
    assert cfg.attack_kwargs() == {"degrees": 30.0, "scale": (0.5, 0.9)}
    assert WatermarkConfig(key="#FF8000").key_rgb() == (1.0, 128 / 255, 0.0)


def test_task_data_splits_are_disjoint_degraded_and_seeded() -> None:
    cfg = WatermarkConfig(n_owner=20, n_attacker=12, n_test=8, task="denoise", noise_sigma=0.1)
    data = task_data(cfg)
    (owner_in, owner_gt), (thief_in, thief_gt), (test_in, _) = data.owner, data.attacker, data.test
    assert owner_in.shape == (20, 3, 32, 32) and thief_in.shape == (12, 3, 32, 32)
    assert 0.06 < (owner_in - owner_gt).std().item() < 0.11  # σ = 0.1 noise, clipped at 0 and 1
    assert torch.equal(owner_in * 255, (owner_in * 255).round())  # 8-bit inputs, as a file would hold
    assert torch.equal(task_data(cfg).owner[0], owner_in)
    assert not any(torch.equal(a, b) for a in owner_gt for b in thief_gt)
    assert len(test_in) == 4 * 8  # candidates; the queries are picked once the owner's model answers them
    answers = torch.full((32, 3, 32, 32), 0.5)  # flat answers have no edges ...
    answers[[3, 7, 20, 31], :, :, 16:] = 1.0  # ... a vertical step has 2 edge columns of 32: 6 %
    assert verification_queries(answers, 3, cfg.min_edges).tolist() == [3, 7, 20]
    with pytest.raises(SecbenchError, match="lower --min-edges"):
        verification_queries(answers, 5, cfg.min_edges)


def test_prune_zeroes_the_requested_fraction_of_conv_weights() -> None:
    torch.manual_seed(0)
    model = build_surrogate("unet", 4)
    pruned = create("attack", "prune", amount=0.3)(model, torch.empty(0), torch.empty(0))
    weights = torch.cat([m.weight.flatten() for m in pruned.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)])
    assert (weights == 0).float().mean().item() == pytest.approx(0.3, abs=1e-3)
    assert not any("weight_orig" in name for name, _ in pruned.named_parameters())
    with pytest.raises(ValueError, match="prune amount"):
        create("attack", "prune", amount=1.0)


def test_finetune_moves_the_surrogate_toward_the_clean_pairs(one_thread) -> None:
    torch.manual_seed(0)
    model = build_surrogate("dilated", 4)
    inputs = torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8)
    targets = inputs // 2  # darken: learnable in a few steps

    def error() -> float:
        with torch.no_grad():
            return (model(inputs.float() / 255) - targets.float() / 255).abs().mean().item()

    before = error()
    create("attack", "finetune", epochs=10, lr=1e-2, batch_size=16)(model, inputs, targets,
                                                                   generator=torch.Generator().manual_seed(0),
                                                                   device=torch.device("cpu"))
    assert error() < before - 0.05


def test_config_rejects_impossible_values() -> None:
    with pytest.raises(SecbenchError, match="fraction"):
        WatermarkConfig(prune_amount=1.5)
    with pytest.raises(SecbenchError, match="NC in"):
        WatermarkConfig(threshold=0)


def test_extractor_output_is_the_named_activation() -> None:
    method = create("defense", "watermark-structure")
    torch.manual_seed(0)
    for output, negative in (("linear", True), ("relu", False)):
        extractor = _nets(WatermarkConfig(extractor_output=output).owner_recipe(), method).extractor
        with torch.no_grad():  # a linear R can write below 0, a ReLU R cannot
            reading = extractor(torch.rand(2, 3, 16, 16))
        assert bool((reading < 0).any()) is negative
    assert Watermark.presets["paper"]["extractor_output"] == "relu"  # the official R


def test_task_data_from_an_image_folder(tmp_path: Path) -> None:
    from PIL import Image

    rng = torch.Generator().manual_seed(0)
    for split, count in (("train", 8), ("test", 4)):
        (tmp_path / split / "photos").mkdir(parents=True)
        for i in range(count):
            pixels = torch.randint(0, 256, (40, 48, 3), generator=rng, dtype=torch.uint8).numpy()
            Image.fromarray(pixels).save(tmp_path / split / "photos" / f"{i}.png")
    cfg = WatermarkConfig(dataset=f"imagefolder:{tmp_path}", n_owner=5, n_attacker=3, n_test=1, min_edges=0.0)
    data = task_data(cfg)
    assert data.owner[0].shape == (5, 3, 32, 32) and data.attacker[1].shape == (3, 3, 32, 32)
    assert len(data.test[0]) == 1
    # with an edge filter the owner picks its queries among every photo it has, not 4 × n_test of them
    assert len(task_data(replace(cfg, min_edges=0.02)).test[0]) == 4
    missing = WatermarkConfig(dataset=f"imagefolder:{tmp_path / 'nope'}")
    with pytest.raises(SecbenchError):
        task_data(missing)


def test_stage_two_trains_one_surrogate_per_owner_attack(one_thread, monkeypatch) -> None:
    import defenses.watermark.owner as owner

    cfg = WatermarkConfig(n_owner=16, width=4, extractor_width=4, hiding_steps=2, tune_steps=3, surrogate_epochs=1,
                          owner_attacks="none,crop", unmarked_surrogate=True)
    trained = []

    def recording(model, inputs, targets, *args, augmentation=None, **kwargs):
        trained.append((targets, augmentation))
        return train_image_model(model, inputs, targets, *args, augmentation=augmentation, **kwargs)

    monkeypatch.setattr(owner, "train_image_model", recording)
    method = create("defense", "watermark-structure")
    torch.manual_seed(0)
    nets = _nets(cfg.owner_recipe(), method)
    covers, inputs = torch.rand(16, 3, 32, 32), torch.rand(16, 3, 32, 32)
    history = owner.train_stage_two(owner.Protection(method, nets.embedder, nets.extractor, {}, cached=False),
                                    cfg.owner_recipe(), covers, inputs, inputs,
                                    generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    assert len(history["loss"]) == 3 and len(trained) == 3
    (marked, plain), (marked_again, crop), (unmarked, last) = trained
    assert plain is None and last is None  # the paper's plain surrogate, and the unmarked model's
    assert torch.equal(marked, marked_again) and not torch.equal(marked, to_uint8(covers))
    assert torch.equal(unmarked, to_uint8(covers))  # the negatives' surrogate learns the unmarked answers
    edge = torch.zeros(1, 3, 32, 32, dtype=torch.uint8).index_fill(3, torch.tensor([0]), 255)
    moved, _ = crop(edge, torch.zeros_like(edge))
    assert moved[..., 0].float().mean() < 255  # the second marked surrogate trains on random crops


def _squares(colour: tuple[float, float, float], n: int) -> torch.Tensor:
    """``n`` grey 32×32 images, each with a square of ``colour``: their structure has that colour."""
    images = torch.full((n, 3, 32, 32), 0.5)
    images[:, :, 8:24, 8:24] = torch.tensor(colour)[:, None, None]
    return images


def test_auto_key_is_the_hue_the_owners_answers_carry_least_on_their_edges() -> None:
    from defenses.watermark.methods import (
        ORANGE_KEY,
        hex_colour,
        key_palette,
        key_shares,
        least_confusable_key,
    )
    from secbench.imageops import edge_chroma

    assert hex_colour(ORANGE_KEY) == "#f07814"
    palette = key_palette()
    assert palette.shape == (12, 3) and 0 <= palette.min() and palette.max() <= 1
    assert torch.allclose(edge_chroma(torch.full((2, 3, 8, 8), 0.3)), torch.zeros(2, 3))  # grey: no colour
    # a quarter of the answers have orange edges, three quarters green ones
    answers = torch.cat([_squares(ORANGE_KEY, 4), _squares((0.1, 0.8, 0.1), 12)])
    shares = key_shares(answers, palette)
    assert shares[1].item() == pytest.approx(0.25) and shares[4].item() == pytest.approx(0.75)  # hues 30° and 120°
    key, share = least_confusable_key(answers)
    assert share == 0.0 and key not in (tuple(palette[1].tolist()), tuple(palette[4].tolist()))
    assert structure_key(WatermarkConfig(key="auto"), answers) == key
    assert structure_key(WatermarkConfig(key="#ff8000"), answers) == (1.0, 128 / 255, 0.0)
