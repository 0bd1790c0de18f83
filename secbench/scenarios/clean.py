"""``clean``: train a classifier on clean data and measure its test accuracy.

The reference point of every other scenario (a backdoor's clean accuracy is compared with it)
and the end-to-end check of the engine: data, model, training loop, store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from secbench.engine import accuracy
from secbench.registry import register
from secbench.scenarios.base import Outcome, RunContext, Scenario
from secbench.scenarios.victim import PAPER_RECIPE, SMOKE_RECIPE, VictimConfig, train_victim


@dataclass(frozen=True)
class CleanConfig(VictimConfig):
    """Defaults are the ``quick`` preset (minutes on 2 CPU cores)."""


@register("scenario", "clean")
class Clean(Scenario):
    """Train a classifier on clean data and record its clean accuracy (the reference for every attack)."""

    name = "clean"
    version = 1
    Config = CleanConfig
    presets = {"smoke": SMOKE_RECIPE, "paper": PAPER_RECIPE}
    headline = ("clean_acc", "train_s")

    def run(self, cfg: dict[str, Any], ctx: RunContext) -> Outcome:
        victim = train_victim(CleanConfig.from_dict(cfg), ctx)
        data, history = victim.data, victim.history
        ctx.save_model(victim.model, "model", name=cfg["model"], num_classes=data.num_classes,
                       img_size=data.img_size, mean=data.mean, std=data.std)
        ctx.write_json("history.json", history)
        epochs = len(history["loss"])
        metrics = {
            "clean_acc": accuracy(victim.model, data.test, device=ctx.device),
            "train_acc": history["acc"][-1],
            "train_loss": history["loss"][-1],
            "train_s": sum(history["epoch_s"]),
            "train_img_per_s": epochs * len(data.train) / sum(history["epoch_s"]),
        }
        better = {"clean_acc": True, "train_acc": True, "train_loss": False, "train_s": False, "train_img_per_s": True}
        derived = {"epochs": epochs, "n_train": len(data.train), "n_test": len(data.test),
                   "victim_cached": victim.cached}
        return Outcome(metrics, better, n=len(data.test), dataset_fingerprint=data.fingerprint(), derived=derived)
