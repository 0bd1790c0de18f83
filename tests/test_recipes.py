"""Every registered model has a training recipe, victims take it unless told otherwise, and it trains."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from secbench import registry
from secbench.config import resolve
from secbench.data.base import ImageSet
from secbench.engine import fit
from secbench.errors import SecbenchError
from secbench.models.recipe import RECIPE_FIELDS, recipe_for
from secbench.scenarios.clean import Clean
from secbench.scenarios.victim import PAPER_RECIPE, VictimConfig

MODELS = registry.list_names("model")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", MODELS)
def test_recipe_exists_and_resolves(name: str) -> None:
    recipe = recipe_for(name)
    assert recipe.source, f"{name}'s recipe should say where it comes from"
    cfg = VictimConfig(model=name)
    assert {k: getattr(cfg, k) for k in RECIPE_FIELDS} == recipe.fields()
    train = cfg.train_config(n_train=10_000)
    assert train.epochs == max(3, -(-recipe.train_images // 10_000))


@pytest.mark.parametrize("name", MODELS)
def test_a_few_recipe_steps_lower_the_loss_on_a_fixed_batch(name: str) -> None:
    """Ten steps of the recipe (its optimiser, rate, warm-up and decay; no augmentation) on 8 fixed 16×16
    images, small enough that CSWin-L takes seconds: the loss falls by a third."""
    torch.manual_seed(0)
    data = ImageSet((torch.rand(8, 3, 16, 16) * 255).to(torch.uint8), torch.arange(8) % 4)
    model = registry.create_model(name, num_classes=4, img_size=16)
    cfg = dataclasses.replace(VictimConfig(model=name).train_config(8), epochs=10, batch_size=8, augment=(),
                              precise_bn=0)
    history = fit(model, data, cfg, generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    assert history["loss"][-1] < 0.67 * history["loss"][0], history["loss"]


def test_command_line_and_presets_override_the_recipe() -> None:
    resolved = resolve(Clean.Config, Clean.presets, "quick", {"model": "mobile-former-26m", "lr": 0.123})
    recipe = recipe_for("mobile-former-26m")
    assert resolved["lr"] == 0.123 and resolved["optimizer"] == recipe.optimizer == "adamw"
    assert resolved["train_images"] == recipe.train_images  # what the record shows: the values used, not None
    paper = resolve(Clean.Config, Clean.presets, "paper", {"model": "mobile-former-26m"})
    assert {k: paper[k] for k in PAPER_RECIPE} == PAPER_RECIPE  # the paper preset is complete: no recipe leaks in


def test_default_model_gets_its_own_recipe_not_the_default_models() -> None:
    micronet = resolve(Clean.Config, Clean.presets, "quick", {"model": "micronet-m1"})
    cnn = resolve(Clean.Config, Clean.presets, "quick", {})
    assert micronet["weight_decay"] == recipe_for("micronet-m1").weight_decay != cnn["weight_decay"]


def test_bad_recipe_values_are_user_errors() -> None:
    with pytest.raises(SecbenchError, match="warmup"):
        VictimConfig(model="cnn-s", warmup=1.5)
    with pytest.raises(SecbenchError, match="unknown model"):
        VictimConfig(model="no-such-net")


def test_a_grid_of_models_gives_each_run_its_own_recipe() -> None:
    from secbench.scenarios.robustness import Robustness

    cfg = resolve(Robustness.Config, Robustness.presets, "quick", {"model": "cnn-s,micronet-m1", "attack": "pgd"})
    runs = {run["model"]: run for run in Robustness().grid(cfg)}
    for name in ("cnn-s", "micronet-m1"):
        assert {k: runs[name][k] for k in RECIPE_FIELDS} == recipe_for(name).fields()
    with pytest.raises(SecbenchError, match="unknown model"):
        Robustness().grid(resolve(Robustness.Config, Robustness.presets, "quick", {"model": "cnn-s,nope"}))
