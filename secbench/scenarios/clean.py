"""``clean``: train a classifier on clean data and measure its test accuracy.

The reference point of every other scenario (a backdoor's clean accuracy is compared with it)
and the end-to-end check of the engine: data, model, training loop, store.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from secbench.data import load_dataset
from secbench.engine import TrainConfig, accuracy, fit
from secbench.registry import create_model, register
from secbench.scenarios.base import Outcome, RunContext, Scenario


@dataclass(frozen=True)
class CleanConfig:
    """Defaults are the ``quick`` preset (minutes on 2 CPU cores)."""

    dataset: str = "digits"
    model: str = "cnn-s"
    data_seed: int = 0  # the dataset draw stays fixed while training seeds vary
    n_train: int | None = None  # None: the dataset's own size
    n_test: int | None = None
    epochs: int | None = None  # None: as many passes as ``train_images`` needs (at least 3)
    train_images: int = 25_000  # the quick preset's training budget, in images seen
    batch_size: int = 128
    lr: float = 0.05
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "triangle"
    augment: str = "crop,flip"  # comma-separated: crop (reflect-pad 4), flip; "" for none
    label_smoothing: float = 0.0

    def epochs_for(self, n_train: int) -> int:
        return self.epochs if self.epochs is not None else max(3, math.ceil(self.train_images / n_train))

    def train_config(self, n_train: int) -> TrainConfig:
        return TrainConfig(epochs=self.epochs_for(n_train), batch_size=self.batch_size, lr=self.lr,
                           optimizer=self.optimizer, momentum=self.momentum, weight_decay=self.weight_decay,
                           schedule=self.schedule,
                           augment=tuple(a for a in self.augment.split(",") if a),
                           label_smoothing=self.label_smoothing)

    def __post_init__(self) -> None:
        self.train_config(n_train=1)  # validates the training options early, before any data is built


@register("scenario", "clean")
class Clean(Scenario):
    """Train a classifier on clean data and record its clean accuracy (the reference for every attack)."""

    name = "clean"
    version = 1
    Config = CleanConfig
    presets = {
        "smoke": {"n_train": 300, "n_test": 100, "epochs": 1, "batch_size": 64},
        # BackdoorBench's victim protocol: 100 epochs, batch 128, SGD lr 0.01 cosine, wd 5e-4.
        "paper": {"epochs": 100, "batch_size": 128, "lr": 0.01, "schedule": "cosine", "weight_decay": 5e-4},
    }

    def run(self, cfg: dict[str, Any], ctx: RunContext) -> Outcome:
        config = CleanConfig(**{k: v for k, v in cfg.items() if k in CleanConfig.__dataclass_fields__})
        data = load_dataset(config.dataset, seed=config.data_seed, n_train=config.n_train, n_test=config.n_test)
        build = {"num_classes": data.num_classes, "img_size": data.img_size, "mean": data.mean, "std": data.std}
        model = create_model(config.model, **build)
        start = time.perf_counter()
        history = fit(model, data.train, config.train_config(len(data.train)), generator=ctx.generator, device=ctx.device,
                      progress=ctx.progress, description=f"clean {config.model} on {config.dataset}")
        train_s = time.perf_counter() - start
        clean_acc = accuracy(model, data.test, device=ctx.device)
        ctx.save_model(model, "model", name=config.model, **build)
        ctx.write_json("history.json", history)
        metrics = {
            "clean_acc": clean_acc,
            "train_acc": history["acc"][-1],
            "train_loss": history["loss"][-1],
            "train_s": train_s,
            "train_img_per_s": len(history["loss"]) * len(data.train) / train_s,
        }
        better = {"clean_acc": True, "train_acc": True, "train_loss": False, "train_s": False, "train_img_per_s": True}
        derived = {"epochs": len(history["loss"]), "n_train": len(data.train), "n_test": len(data.test)}
        return Outcome(metrics, better, n=len(data.test), dataset_fingerprint=data.fingerprint(), derived=derived)
