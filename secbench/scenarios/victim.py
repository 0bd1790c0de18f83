"""The classifier a scenario attacks: its config fields, and training it once per (data, model, recipe, seed).

``clean`` and ``robustness`` (and later the backdoor scenarios' reference models) share these
fields and this cache, so a model trained by one scenario is reused by the next.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from torch import nn

from secbench import checkpoint, registry
from secbench.config import config_hash, option
from secbench.data import DataSplits, check_spec, load_dataset
from secbench.engine import TrainConfig, fit
from secbench.models.recipe import RECIPE_FIELDS, recipe_for
from secbench.registry import create_model
from secbench.scenarios.base import RunContext

DATASET_HELP = "digits | shapes | cifar10 | cifar100 | svhn | gtsrb | imagefolder:PATH"


RECIPE_HELP = "default: the model's recipe (secbench models --recipes)"


@dataclass(frozen=True)
class VictimConfig:
    """Data, model and training recipe. Defaults are the ``quick`` preset (minutes on 2 CPU cores); the
    training fields left at None take the model's recipe (:mod:`secbench.models.recipe`) at construction."""

    dataset: str = option("digits", DATASET_HELP)
    model: str = option("cnn-s", "a registered model (secbench list models)")
    data_seed: int = option(0, "seed of the dataset draw; it stays fixed while training seeds vary")
    n_train: int | None = option(None, "training images (default: the dataset's own size)", low=1)
    n_test: int | None = option(None, "test images (default: the dataset's own size)", low=1)
    epochs: int | None = option(None, "epochs (default: as many as --train-images needs, at least 3)", low=1)
    train_images: int | None = option(None, f"training budget in images seen, used when --epochs is not given; {RECIPE_HELP}", low=1)
    batch_size: int | None = option(None, f"batch size; {RECIPE_HELP}", low=1)
    lr: float | None = option(None, f"peak learning rate; {RECIPE_HELP}", positive=True)
    optimizer: str | None = option(None, f"sgd (Nesterov) | adam | adamw; {RECIPE_HELP}")
    momentum: float | None = option(None, f"SGD momentum; {RECIPE_HELP}", high=1)
    weight_decay: float | None = option(None, f"weight decay (not applied to norms and biases); {RECIPE_HELP}")
    schedule: str | None = option(None, f"triangle (warm-up then linear decay) | cosine (after the warm-up) | "
                                        f"constant | step; {RECIPE_HELP}")
    warmup: float | None = option(None, f"fraction of the steps the learning rate rises linearly; {RECIPE_HELP}", high=1)
    augment: str | None = option(None, f"comma-separated: crop (reflect-pad 4), flip; empty for none; {RECIPE_HELP}")
    label_smoothing: float | None = option(None, f"label smoothing of the cross-entropy; {RECIPE_HELP}", high=1)
    precise_bn: int = option(50, "batches that re-estimate BatchNorm statistics after training (0: off)")

    def epochs_for(self, n_train: int) -> int:
        return self.epochs if self.epochs is not None else max(3, math.ceil(self.train_images / n_train))

    def train_config(self, n_train: int) -> TrainConfig:
        return TrainConfig(epochs=self.epochs_for(n_train), batch_size=self.batch_size, lr=self.lr,
                           optimizer=self.optimizer, momentum=self.momentum, weight_decay=self.weight_decay,
                           schedule=self.schedule, warmup=self.warmup,
                           augment=tuple(a for a in self.augment.split(",") if a),
                           label_smoothing=self.label_smoothing, precise_bn=self.precise_bn)

    def __post_init__(self) -> None:
        check_spec(self.dataset)
        models = self.model.split(",")
        if self.model != "all":
            for name in models:
                registry.get("model", name.strip())
        if len(models) > 1 or self.model == "all":
            return  # a scenario's grid of models: each run's config takes its own model's recipe
        unset = [name for name in RECIPE_FIELDS if getattr(self, name) is None]
        if unset:
            recipe = recipe_for(self.model).fields()
            for name in unset:  # frozen: the recipe completes the config once, here, and the record shows it
                object.__setattr__(self, name, recipe[name])
        self.train_config(n_train=1)  # validates the training options early, before any data is built

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> VictimConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in cfg.items() if k in names})


# Paper preset for victims: BackdoorBench's protocol (100 epochs, batch 128, SGD lr 0.01 cosine, wd 5e-4),
# complete, so that it replaces every model's own recipe.
PAPER_RECIPE = {"epochs": 100, "batch_size": 128, "lr": 0.01, "optimizer": "sgd", "momentum": 0.9,
                "schedule": "cosine", "warmup": 0.0, "weight_decay": 5e-4, "augment": "crop,flip",
                "label_smoothing": 0.0}
SMOKE_RECIPE = {"n_train": 300, "n_test": 100, "epochs": 1, "batch_size": 64}


@dataclass
class Victim:
    model: nn.Module
    data: DataSplits
    history: dict[str, list[float]]  # of the original training, also when loaded from the cache
    cached: bool


def train_victim(cfg: VictimConfig, ctx: RunContext) -> Victim:
    """Train ``cfg.model`` on ``cfg.dataset`` with seed ``ctx.seed``, or load it if an earlier run did.

    The cache entry is keyed by the victim fields, the seed and the device (see :func:`checkpoint.save_entry`).
    """
    data = load_dataset(cfg.dataset, seed=cfg.data_seed, n_train=cfg.n_train, n_test=cfg.n_test)
    # Only the victim's own fields: the same model serves every attack a scenario adds on top.
    victim_fields = {f.name: getattr(cfg, f.name) for f in fields(VictimConfig)}
    key = config_hash({"victim": victim_fields, "seed": ctx.seed, "device": ctx.device.type})
    entry = ctx.cache / f"victim-{cfg.model}-{key.split(':')[1][:16]}"
    if cached := checkpoint.load_entry(entry, ctx.device):
        return Victim(cached[0], data, cached[1], cached=True)
    build = {"num_classes": data.num_classes, "img_size": data.img_size, "mean": data.mean, "std": data.std}
    model = create_model(cfg.model, **build)
    history = fit(model, data.train, cfg.train_config(len(data.train)), generator=ctx.generator, device=ctx.device,
                  progress=ctx.progress, description=f"train {cfg.model} on {cfg.dataset}")
    checkpoint.save_entry(entry, model, history, name=cfg.model, **build)
    return Victim(model, data, history, cached=False)
