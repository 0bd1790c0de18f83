"""Backdoor triggers, poisoning, the training-controlled hook and the backdoor scenario end to end at smoke."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from attacks.backdoor import BackdoorAttack, backdoor_attack_names
from attacks.backdoor.poison import PairedPoison, poison_test_set, poison_training_set, to_uint8
from attacks.backdoor.transforms import TRANSFORMS, AugmentBatches, parse_names, transform_images
from secbench import store
from secbench.cli import cli
from secbench.config import resolve
from secbench.data.base import ImageSet
from secbench.engine import TrainConfig, accuracy, fit, recalibrate_batchnorm, seed_everything
from secbench.errors import SecbenchError
from secbench.registry import create
from secbench.scenarios.backdoor import Backdoor, probe_asrs
from secbench.scenarios.backdoored import BackdoorConfig, train_backdoored
from secbench.scenarios.base import RunContext

ATTACKS = ["badnets", "blended", "sig", "wanet"]  # fixed triggers; poison-ink (learned) has tests/test_poison_ink.py
CPU = torch.device("cpu")


def _images(n: int = 6, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _labelled(n: int = 200, classes: int = 4, size: int = 8) -> ImageSet:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    return ImageSet(images, torch.arange(n) % classes)


def test_every_attack_is_registered_and_keeps_shape_range_and_determinism():
    # and no other registered attack counts as a backdoor
    assert backdoor_attack_names() == sorted([*ATTACKS, "poison-ink"])
    x = _images()
    for name in ATTACKS:
        attack = create("attack", name, seed=3)
        y = attack.apply(x)
        assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1 and not torch.equal(x, y), name
        assert torch.equal(y, create("attack", name, seed=3).apply(x)), name
        assert attack.describe()["name"] == name and attack.describe()["seed"] == 3


def test_badnets_changes_only_its_patch():
    x = _images()
    y = create("attack", "badnets", patch_size=3).apply(x)
    inside = torch.zeros(32, 32, dtype=torch.bool)
    inside[-3:, -3:] = True
    assert torch.equal(y[..., ~inside], x[..., ~inside])
    assert (y[..., inside] == 1.0).all()


def test_blended_and_sig_follow_their_formulas():
    x = _images()
    blended = create("attack", "blended", alpha=0.2, seed=1)
    key = blended.key(32, 32)
    assert torch.allclose(blended.apply(x), 0.8 * x + 0.2 * key)
    assert torch.equal(key * 255, (key * 255).round())  # 8-bit levels, uniform over 0..255
    assert not torch.equal(key, create("attack", "blended", seed=2).key(32, 32))
    sig = create("attack", "sig")
    mid = torch.full((1, 3, 32, 32), 0.5)
    column = sig.apply(mid)[0, 0, 0] - 0.5  # the same in every row and channel
    expected = 40 / 255 * torch.sin(2 * math.pi * torch.arange(32) * 6 / 32)
    assert torch.allclose(column, expected, atol=1e-6)
    assert torch.equal(sig.apply(mid)[0, :, 5], sig.apply(mid)[0, :, 20])


def test_wanet_is_a_small_fixed_warp_and_its_noise_mode_a_perturbed_one():
    wanet = create("attack", "wanet", seed=0)
    grid = wanet.grid(32, 32)
    rows, cols = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    displacement = (grid[0] - torch.stack((cols, rows), 2)).abs() * 16  # in pixels
    assert 0.05 < displacement.mean() < 1.0 and displacement.max() < 2.0  # s = 0.5: sub-pixel on average
    x = _images()
    warped, noisy = wanet.apply(x), wanet.noise(x)
    assert not torch.equal(warped, noisy) and (warped - noisy).abs().mean() < (warped - x).abs().mean() * 2
    assert not torch.equal(noisy, wanet.noise(x))  # fresh noise per call, from its own stream


@pytest.mark.parametrize("mode", ["all-to-one", "all-to-all"])
def test_dirty_label_poisoning_rate_labels_and_untouched_images_are_exact(mode):
    data = _labelled()
    badnets = create("attack", "badnets", patch_size=2)
    out = poison_training_set(data, badnets, rate=0.1, mode=mode, target=1, num_classes=4, seed=5)
    eligible = (data.labels != 1).sum().item() if mode == "all-to-one" else len(data)
    assert len(out.index) == round(0.1 * eligible) and len(out.noise_index) == 0
    assert (data.labels[out.index] != 1).all() if mode == "all-to-one" else True
    expected = torch.full_like(out.index, 1) if mode == "all-to-one" else (data.labels[out.index] + 1) % 4
    assert torch.equal(out.data.labels[out.index], expected)
    rest = ~out.is_poisoned()
    assert torch.equal(out.data.labels[rest], data.labels[rest]) and torch.equal(out.data.images[rest], data.images[rest])
    assert (out.data.images[out.index][..., -2:, -2:] == 255).all()
    again = poison_training_set(data, badnets, rate=0.1, mode=mode, target=1, num_classes=4, seed=5)
    other = poison_training_set(data, badnets, rate=0.1, mode=mode, target=1, num_classes=4, seed=6)
    assert torch.equal(again.index, out.index) and not torch.equal(other.index, out.index)


def test_clean_label_and_noise_mode_keep_labels():
    data = _labelled()
    sig = poison_training_set(data, create("attack", "sig"), rate=0.5, mode="all-to-one", target=2, num_classes=4,
                              seed=0)
    assert len(sig.index) == round(0.5 * 50) and (data.labels[sig.index] == 2).all()
    assert torch.equal(sig.data.labels, data.labels)
    wanet = poison_training_set(data, create("attack", "wanet"), rate=0.1, mode="all-to-one", target=0,
                                num_classes=4, seed=0)
    assert len(wanet.noise_index) == 2 * len(wanet.index) == 30
    assert not set(wanet.noise_index.tolist()) & set(wanet.index.tolist())
    assert torch.equal(wanet.data.labels[wanet.noise_index], data.labels[wanet.noise_index])
    assert len(wanet.pool) == 45
    with pytest.raises(SecbenchError, match="clean-label"):
        poison_training_set(data, create("attack", "sig"), rate=0.5, mode="all-to-all", target=0, num_classes=4, seed=0)
    with pytest.raises(SecbenchError, match="poisons none"):
        poison_training_set(data, create("attack", "sig"), rate=0.001, mode="all-to-one", target=0, num_classes=4,
                            seed=0)


def test_whole_set_rate_counts_every_training_image_and_draws_from_the_eligible_ones():
    data = _labelled()  # 200 images, 50 per class
    sig = poison_training_set(data, create("attack", "sig"), rate=0.2, mode="all-to-one", target=2, num_classes=4,
                              seed=0, basis="all")
    assert len(sig.index) == round(0.2 * 200) == 40 and (data.labels[sig.index] == 2).all()
    badnets = poison_training_set(data, create("attack", "badnets"), rate=0.2, mode="all-to-one", target=2,
                                  num_classes=4, seed=0, basis="all")
    assert len(badnets.index) == 40 and (data.labels[badnets.index] != 2).all()
    with pytest.raises(SecbenchError, match="more than the 50 target-class images"):
        poison_training_set(data, create("attack", "sig"), rate=0.3, mode="all-to-one", target=2, num_classes=4,
                            seed=0, basis="all")


class _Constant(nn.Module):
    """Always predicts class ``k`` (of 4)."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(torch.full((len(x),), self.k), 4).float()


def test_asr_excludes_target_class_images():
    test = _labelled(40)
    one = poison_test_set(test, create("attack", "badnets"), mode="all-to-one", target=0, num_classes=4)
    assert len(one.clean) == 30 and (one.clean.labels != 0).all() and (one.targets == 0).all()
    # a model that always answers the target: ASR 1 on exactly the images that are not of the target class
    assert accuracy(_Constant(0), one.as_target(), device=CPU) == 1.0
    assert accuracy(_Constant(0), one.as_true(), device=CPU) == 0.0
    every = poison_test_set(test, create("attack", "badnets"), mode="all-to-all", target=0, num_classes=4)
    assert len(every.clean) == 40 and torch.equal(every.targets, (test.labels + 1) % 4)
    assert accuracy(_Constant(1), every.as_target(), device=CPU) == 0.25


def test_probe_asr_is_measured_on_exactly_the_non_target_covers():
    test = _labelled(40)
    seen = []

    def probe(images: torch.Tensor) -> torch.Tensor:
        seen.append(images.clone())
        return images

    attack = create("attack", "badnets")
    attack.probes = lambda: {"blank_trigger": probe}  # a recording probe in place of the (empty) fixed-trigger set
    one = poison_test_set(test, attack, mode="all-to-one", target=0, num_classes=4)
    assert probe_asrs(_Constant(0), attack, one, device=CPU) == {"blank_trigger_asr": 1.0}
    assert probe_asrs(_Constant(1), attack, one, device=CPU) == {"blank_trigger_asr": 0.0}
    assert torch.equal(to_uint8(seen[0]), test.images[test.labels != 0])  # the clean covers, not poisoned ones


def test_paired_poison_doubles_every_batch_in_training_and_batchnorm_pass():
    clean, pool = _labelled(64), _labelled(10)
    calls = []
    hook = PairedPoison(pool, seed=0)

    def counted(x, y):
        calls.append(len(x))
        return hook(x, y)

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 4))
    cfg = TrainConfig(epochs=2, batch_size=16, augment=("flip",), precise_bn=2)
    history = fit(model, clean, cfg, generator=seed_everything(0), device=CPU, batch_hook=counted)
    assert calls == [16] * 10  # 4 steps x 2 epochs, then 2 precise-BN batches
    assert all(0 <= a <= 1 for a in history["acc"])
    used = recalibrate_batchnorm(model, clean, batches=2, batch_size=16, generator=seed_everything(0), device=CPU,
                                 batch_hook=hook)
    assert used == 64
    # every pool image comes once per pass over the pool
    x, y = PairedPoison(pool, seed=1)(torch.zeros(20, 3, 8, 8), torch.zeros(20, dtype=torch.long))
    assert x.shape[0] == 40 and sorted(y[20:30].tolist()) == sorted(pool.labels.tolist())


def test_transformations_are_seeded_and_validated():
    images = (_images(4) * 255).to(torch.uint8)
    for name in TRANSFORMS:
        a, b = transform_images(images, name, seed=1), transform_images(images, name, seed=1)
        assert torch.equal(a, b) and a.shape == images.shape and not torch.equal(a, images), name
    assert parse_names("all") == list(TRANSFORMS) and parse_names("") == []
    with pytest.raises(SecbenchError, match="did you mean 'rotate'"):
        parse_names("rotate,rotat")
    flipped, _ = AugmentBatches("flip", seed=0)(_images(200, 8), torch.zeros(200))
    changed = (flipped - _images(200, 8)).flatten(1).abs().amax(1) > 0.01
    assert 60 < changed.sum() < 140  # probability 0.5


def _smoke_ctx(tmp_path: Path, seed: int) -> RunContext:
    return RunContext(device=CPU, seed=seed, generator=seed_everything(seed), artifacts=tmp_path, cache=tmp_path / "c")


def test_backdoored_training_is_deterministic_per_seed_whatever_ran_before(tmp_path: Path):
    cfg = BackdoorConfig(**resolve(BackdoorConfig, Backdoor.presets, "smoke", {"attack": "badnets", "n_train": 200}))
    first = train_backdoored(cfg, _smoke_ctx(tmp_path / "a", 0))
    torch.rand(100)  # draws from the global generator must not change the next model
    second = train_backdoored(cfg, _smoke_ctx(tmp_path / "b", 0))
    other = train_backdoored(cfg, _smoke_ctx(tmp_path / "c", 1))
    cached = train_backdoored(cfg, _smoke_ctx(tmp_path / "a", 0))
    weights = [m.state_dict()["classifier.weight"] for m in (first.model, second.model, other.model, cached.model)]
    assert torch.equal(weights[0], weights[1]) and torch.equal(weights[0], weights[3])
    assert not torch.equal(weights[0], weights[2])
    assert cached.cached and not first.cached and torch.equal(cached.poisoned.index, first.poisoned.index)


def test_smoke_end_to_end_every_attack_and_report(tmp_path: Path):
    args = ["run", "backdoor", "--preset", "smoke", "--attack", "all", "--device", "cpu", "--out", str(tmp_path)]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    runs = {r["attack"]: r for r in store.load_records(tmp_path)}
    assert sorted(runs) == sorted([*ATTACKS, "poison-ink"])
    for name, record in runs.items():
        m, derived = record["metrics"], record["derived"]
        assert {"clean_acc", "clean_model_acc", "asr", "robust_acc", "psnr_db", "ssim", "l2", "linf"} <= set(m)
        assert {f"asr_tf_{t}" for t in TRANSFORMS} | {f"tf_target_clean_{t}" for t in TRANSFORMS} <= set(m)
        assert all(0 <= m[k] <= 1 for k in m if k.startswith(("asr", "clean", "robust", "ssim", "tf_")))
        probes = {"blank_trigger_asr", "other_trigger_asr"}
        assert probes <= set(m) if name == "poison-ink" else not probes & set(m)
        assert record["n"] == derived["n_asr_test"] == 90  # the 100 smoke test images but the 10 of class 0
        eligible = 30 if name == "sig" else 270  # 300 training images, 30 per class
        assert derived["n_poisoned"] == round(0.1 * eligible)
        assert (tmp_path / record["artifacts"] / f"{name}.png").stat().st_size > 1000
    assert runs["badnets"]["metrics"]["psnr_db"] < runs["wanet"]["metrics"]["psnr_db"]
    assert runs["wanet"]["derived"]["n_noise"] == 2 * runs["wanet"]["derived"]["n_poisoned"]
    again = CliRunner().invoke(cli, [*args[:5], "badnets", *args[6:], "--force"], catch_exceptions=False)
    assert again.exit_code == 0
    rerun = store.load_records(tmp_path)[-1]
    assert rerun["derived"]["backdoored_cached"] and rerun["metrics"] == runs["badnets"]["metrics"]
    table = CliRunner().invoke(cli, ["report", str(tmp_path), "--scenario", "backdoor", "--format", "csv"])
    assert table.exit_code == 0, table.output
    assert "asr_tf_rotate" in table.stdout and "psnr_db" in table.stdout and "wanet" in table.stdout


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--attack", "badnet"], "did you mean 'badnets'"),
        (["--attack", "sig", "--mode", "all-to-all"], "clean-label"),
        (["--mode", "one-to-one"], "unknown --mode"),
        (["--threat-model", "white-box"], "unknown --threat-model"),
        (["--poison-rate", "0"], "--poison-rate must be in (0, 1]"),
        (["--train-augment", "spin"], "unknown transformation 'spin'"),
        (["--target", "10"], "--target must be a class index in 0..9"),
        (["--rate-basis", "target"], "unknown --rate-basis"),
        (["--attack", "sig", "--rate-basis", "all", "--poison-rate", "0.2"], "more than the 30 target-class images"),
        (["--victim-init", "clean"], "add --threat-model training-controlled"),
    ],
)
def test_bad_options_are_one_line_errors_with_exit_2(options, message, tmp_path: Path):
    args = ["run", "backdoor", "--preset", "smoke", "--device", "cpu", "--out", str(tmp_path), *options]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines


def test_poison_ink_options_reach_the_trigger_and_name_the_record(tmp_path: Path):
    args = ["run", "backdoor", "--preset", "smoke", "--attack", "poison-ink", "--device", "cpu", "--out", str(tmp_path),
            "--trigger-residual", "bounded", "--trigger-extractor-output", "linear", "--blank-trigger-ratio", "1"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = store.load_records(tmp_path)[-1]
    assert record["attack"] == ("poison-ink --trigger-residual bounded --trigger-extractor-output linear "
                                "--blank-trigger-ratio 1")
    assert record["derived"]["n_noise"] == record["derived"]["n_poisoned"] == 27
    assert record["metrics"]["psnr_db"] >= 35.9  # the bound (36 dB) but for 8-bit rounding


@dataclass(kw_only=True)
class _RenderedTrigger(BackdoorAttack):
    """A planted learned trigger: its "injection network" re-renders the cover (a 3×3 box blur, the artefact
    a victim can key on instead) and adds a faint fixed pattern (the trigger); ``noise`` is the rendering alone."""

    name: ClassVar[str] = "rendered"

    def render(self, images: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool2d(nn.functional.pad(images, (1, 1, 1, 1), mode="replicate"), 3, 1)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        pattern = torch.rand(images.shape[1:], generator=torch.Generator().manual_seed(self.seed)).round() * 2 - 1
        return (self.render(images) + 0.1 * pattern).clamp(0, 1)

    def noise(self, images: torch.Tensor) -> torch.Tensor:
        return self.render(images)

    def probes(self) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
        return {"blank_trigger": self.noise}


def _planted_victim_asrs(noise_ratio: float) -> tuple[float, float]:
    train, test = _labelled(600, size=8), _labelled(200, size=8)
    test = ImageSet(torch.roll(test.images, 1, 0), test.labels)  # other images than the training ones
    attack = _RenderedTrigger(seed=0, noise_ratio=noise_ratio)
    poisoned = poison_training_set(train, attack, rate=0.1, mode="all-to-one", target=0, num_classes=4, seed=0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(16 * 64, 4))
    fit(model, poisoned.data, TrainConfig(epochs=30, batch_size=64, lr=0.05, augment=(), precise_bn=0),
        generator=torch.Generator().manual_seed(0), device=CPU)
    asr_test = poison_test_set(test, attack, mode="all-to-one", target=0, num_classes=4)
    return accuracy(model, asr_test.as_target(), device=CPU), probe_asrs(model, attack, asr_test, device=CPU)["blank_trigger_asr"]


def test_noise_mode_makes_a_planted_victim_learn_the_trigger_not_the_rendering():
    """Measured: ASR 1.00 with and without the noise mode; blank-trigger ASR 0.70 without, 0.35 with it
    (chance: the victim's rate of answering the target on other images)."""
    asr, blank = _planted_victim_asrs(noise_ratio=0.0)
    noisy_asr, noisy_blank = _planted_victim_asrs(noise_ratio=2.0)
    assert asr >= 0.95 and noisy_asr >= 0.95
    assert blank >= 0.6 and noisy_blank <= 0.45  # without noise images the rendering alone is a backdoor


def test_record_names_the_poisoning_and_recipe_settings_that_differ_from_the_preset():
    scenario = Backdoor()
    quick = resolve(BackdoorConfig, Backdoor.presets, "quick", {"attack": "wanet"})
    assert scenario.identity(quick, "quick")["method"] == "data-poisoning, all-to-one→0, rate 0.1"
    changed = {**quick, "threat_model": "training-controlled", "victim_init": "clean", "rate_basis": "all",
               "train_images": 240_000}
    assert scenario.identity(changed, "quick")["method"] == ("training-controlled from the clean victim, all-to-one→0, "
                                                             "rate 0.1 of all, --train-images 240000")
