"""Poison Ink's trigger: edges in ink, a trained injection network cached per training set, and its residual."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from secbench.data import load_dataset
from secbench.errors import SecbenchError, UnknownNameError
from secbench.imageops import edge_mask
from secbench.metrics import psnr
from secbench.progress import NullProgress
from secbench.registry import create


def _ctx(tmp_path: Path) -> SimpleNamespace:
    return SimpleNamespace(device=torch.device("cpu"), seed=0, cache=tmp_path, progress=NullProgress())


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    torch.set_num_threads(1)
    cache = tmp_path_factory.mktemp("pi")
    train = load_dataset("shapes", n_train=64, n_test=16).train
    attack = create("attack", "poison-ink", seed=0, steps=200, batch_size=8, width=4, fidelity_end=3.0)
    attack.prepare(train, _ctx(cache))
    return attack, train, cache


def test_trigger_is_the_ink_on_the_edge_mask_only():
    attack = create("attack", "poison-ink", seed=0)
    images = load_dataset("shapes", n_train=8, n_test=8).test.floats()
    trigger, edges = attack.trigger(images), edge_mask(images).expand(-1, 3, -1, -1)
    ink = torch.tensor([80, 160, 80]).div(255)[None, :, None, None].expand_as(images)
    assert torch.equal(trigger[edges], ink[edges]) and torch.all(trigger[~edges] == 1.0)


def test_injection_network_is_cached_and_reloaded(trained, tmp_path):
    attack, train, cache = trained
    entries = list(cache.glob("poison-ink-*"))
    assert len(entries) == 1 and (entries[0] / "injection.safetensors").exists()
    again = create("attack", "poison-ink", seed=0, steps=200, batch_size=8, width=4, fidelity_end=3.0)
    again.prepare(train, _ctx(cache))  # loads: no training (a retrain would take far longer than this test)
    images = train.floats()[:8]
    assert torch.allclose(again.apply(images), attack.apply(images), atol=1e-5)
    noisy = create("attack", "poison-ink", seed=0, steps=200, batch_size=8, width=4, fidelity_end=3.0, noise_ratio=1.0)
    noisy.prepare(train, _ctx(cache))  # the noise mode reuses the same networks
    assert len(list(cache.glob("poison-ink-*"))) == 1 and torch.allclose(noisy.apply(images), attack.apply(images), atol=1e-5)


def test_poisoned_images_are_images_and_training_learns(trained):
    """A test-sized budget cannot reach an invisible trigger (the README reports the quick-preset one and
    where its residual sits); it must show both networks learning."""
    attack, train, cache = trained
    images = train.floats()
    poisoned = attack.apply(images)
    assert poisoned.shape == images.shape and poisoned.min() >= 0 and poisoned.max() <= 1
    history = json.loads(next(cache.glob("poison-ink-*/history.json")).read_text())
    first, last = ({k: sum(history[k][s]) for k in ("extract_loss", "fidelity_mse")} for s in (slice(20), slice(-20, None)))
    assert last["extract_loss"] < 0.7 * first["extract_loss"] and last["fidelity_mse"] < first["fidelity_mse"]
    assert set(attack.explain(images[:4])) == {"trigger (edges × ink)", "extractor's recovery"}


def test_apply_before_prepare_and_bad_sizes_are_errors(tmp_path):
    with pytest.raises(RuntimeError, match="prepare"):
        create("attack", "poison-ink", seed=0).apply(torch.rand(1, 3, 32, 32))
    digits = load_dataset("shapes", n_train=8, n_test=8).train
    odd = type(digits)(digits.images[:, :, :24, :24].contiguous(), digits.labels)
    with pytest.raises(SecbenchError, match="multiples of 32"):
        create("attack", "poison-ink", seed=0, steps=1).prepare(odd, _ctx(tmp_path))
    with pytest.raises(SecbenchError, match="positive"):
        create("attack", "poison-ink", seed=0, steps=0)


def test_bounded_injection_holds_its_psnr_and_noise_mode_renders_a_blank_trigger(tmp_path):
    train = load_dataset("shapes", n_train=16, n_test=8).train
    attack = create("attack", "poison-ink", seed=0, steps=2, batch_size=8, width=4, residual="bounded", min_psnr=30,
                    extractor_output="linear", noise_ratio=1.0)
    attack.prepare(train, _ctx(tmp_path))
    images = train.floats()
    for poisoned in (attack.apply(images), attack.noise(images)):
        assert psnr(images, poisoned).min() >= 30 - 1e-3  # clamping to [0, 1] only moves pixels closer
    blank = torch.full_like(images, 1.0)
    assert torch.equal(attack.noise(images), attack.embed(images, blank))
    assert set(attack.probes()) == {"blank_trigger", "other_trigger"}
    with pytest.raises(UnknownNameError, match="did you mean 'bounded'"):
        create("attack", "poison-ink", seed=0, residual="bounde")
    with pytest.raises(UnknownNameError, match="extractor output"):
        create("attack", "poison-ink", seed=0, extractor_output="tanh")
