"""``clean``: train a classifier on clean data and measure its test accuracy.

The reference point of every other scenario (a backdoor's clean accuracy is compared with it)
and the end-to-end check of the engine: data, model, training loop, store.
"""

from __future__ import annotations

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
    epochs: int = 15
    batch_size: int = 128
    lr: float = 0.05
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "triangle"
    augment: str = "crop,flip"  # comma-separated: crop (reflect-pad 4), flip; "" for none
    label_smoothing: float = 0.0

    def train_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, optimizer=self.optimizer,
                           momentum=self.momentum, weight_decay=self.weight_decay, schedule=self.schedule,
                           augment=tuple(a for a in self.augment.split(",") if a),
                           label_smoothing=self.label_smoothing)

    def __post_init__(self) -> None:
        self.train_config()  # validates the training options early, before any data is built


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
        history = fit(model, data.train, config.train_config(), generator=ctx.generator, device=ctx.device,
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
            "train_img_per_s": config.epochs * len(data.train) / train_s,
        }
        better = {"clean_acc": True, "train_acc": True, "train_loss": False, "train_s": False, "train_img_per_s": True}
        return Outcome(metrics, better, n=len(data.test), dataset_fingerprint=data.fingerprint())
