"""One backdoor defense against one backdoored model: the ``backdoor`` scenario's runs with ``--defense``.

The backdoored model comes from :func:`secbench.scenarios.backdoored.train_backdoored` (cached by the
attack's run). Every defense gets the same clean budget: ``round(defense_data × N)`` images drawn (from
the seed) out of the clean training set. Metrics, from the defender's side:
- ``clean_acc_before`` / ``asr_before``: the backdoored model; ``clean_acc_after`` / ``asr_after``: what
  the defender deploys. For an input filter (STRIP) an input it rejects gets no answer, so after the
  filter CA counts clean test images accepted *and* classified correctly, ASR poisoned images accepted
  *and* sent to the target.
- ``der``: defense effectiveness rating (:func:`defenses.backdoor.base.defense_effectiveness`).
- ``defense_s``: the defense's own wall time (loading the model and scoring excluded).
- each defense's detection metrics (``nc_*``, ``strip_*``, ``fp_*``, ``ss_*``, ``ac_*``).
A training-data filter (Spectral Signatures, Activation Clustering) gets ``retrain``: the victim trained
from scratch on the images it keeps, which it deploys; the scoring is the same.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch
from torch import nn

from defenses.backdoor import DefenseInputs, defense_effectiveness
from secbench.data.base import ImageSet
from secbench.engine import TrainConfig, predict
from secbench.errors import SecbenchError
from secbench.registry import create
from secbench.scenarios.backdoored import BackdoorConfig, Backdoored, fit_victim
from secbench.scenarios.base import Outcome, RunContext


def clean_budget(train: ImageSet, fraction: float, *, seed: int) -> ImageSet:
    """``round(fraction × len(train))`` images of the clean training set ``train``, drawn from ``seed``."""
    n = round(fraction * len(train))
    if n < 1:
        raise SecbenchError(f"--defense-data {fraction} of {len(train)} training images gives the defender none")
    return train.subset(torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n].sort().values)


def finetune_config(cfg: BackdoorConfig) -> TrainConfig:
    """The defender's fine-tuning recipe on its budget: the victim's batch size, augmentation and optimiser,
    ``defense_epochs`` at ``defense_lr`` under a cosine schedule."""
    victim = cfg.train_config(1)
    return TrainConfig(epochs=cfg.defense_epochs, batch_size=victim.batch_size, lr=cfg.defense_lr,
                       optimizer=victim.optimizer, momentum=victim.momentum, weight_decay=victim.weight_decay,
                       schedule="cosine", augment=victim.augment, precise_bn=victim.precise_bn)


def _hits(model: torch.nn.Module, data: ImageSet, device: torch.device) -> torch.Tensor:
    """bool ``(N,)``: the model's answer equals the label."""
    return predict(model, data.images, device=device).argmax(1) == data.labels.cpu()


def retrainer(cfg: BackdoorConfig, backdoored: Backdoored, ctx: RunContext) -> Callable[[ImageSet], nn.Module]:
    """``kept`` → a fresh victim trained on it from scratch, as the backdoored one was (same model, recipe, seed)."""
    def retrain(kept: ImageSet) -> nn.Module:
        return fit_victim(cfg, backdoored.data, kept, ctx, description=f"retrain {cfg.model} on {len(kept)} kept images")[0]

    return retrain


def run_defense(cfg: BackdoorConfig, backdoored: Backdoored, ctx: RunContext) -> Outcome:
    """Apply ``cfg.defense`` (one name) to ``backdoored`` and measure it (see the module docstring)."""
    defense = create("defense", cfg.defense, seed=ctx.seed,
                     **{k: getattr(cfg, k) for k in cfg.defense_settings(cfg.defense)})
    data, test, device = backdoored.data, backdoored.test, ctx.device
    before = {"clean": _hits(backdoored.model, data.test, device), "asr": _hits(backdoored.model, test.as_target(), device)}
    inputs = DefenseInputs(model=copy.deepcopy(backdoored.model).eval(),
                           budget=clean_budget(backdoored.poisoned.clean, cfg.defense_data, seed=ctx.seed),
                           finetune=finetune_config(cfg), num_classes=data.num_classes, test=data.test,
                           poisoned_test=test, poisoned_train=backdoored.poisoned,
                           target=cfg.target if cfg.mode == "all-to-one" else None,
                           retrain=None if cfg.threat_model == "training-controlled" else retrainer(cfg, backdoored, ctx))
    clock = time.perf_counter()
    result = defense.run(inputs, ctx)
    seconds = time.perf_counter() - clock
    after = {"clean": _hits(result.model, data.test, device), "asr": _hits(result.model, test.as_target(), device),
             "robust": _hits(result.model, test.as_true(), device)}
    if result.accepted is not None:  # a rejected input gets no answer: neither a correct one nor the target
        clean_ok, poisoned_ok = result.accepted
        after = {"clean": after["clean"] & clean_ok, "asr": after["asr"] & poisoned_ok,
                 "robust": after["robust"] & poisoned_ok}
    rates = {f"{k}_before": v.float().mean().item() for k, v in before.items()}
    rates |= {f"{k}_after": v.float().mean().item() for k, v in after.items()}
    metrics = {"clean_acc_before": rates["clean_before"], "asr_before": rates["asr_before"],
               "clean_acc_after": rates["clean_after"], "asr_after": rates["asr_after"],
               "robust_acc_after": rates["robust_after"], "defense_s": seconds}
    metrics["der"] = defense_effectiveness(clean_acc_before=metrics["clean_acc_before"],
                                           clean_acc_after=metrics["clean_acc_after"],
                                           asr_before=metrics["asr_before"], asr_after=metrics["asr_after"])
    better = {"clean_acc_before": True, "asr_before": False, "clean_acc_after": True, "asr_after": False,
              "robust_acc_after": True, "defense_s": False, "der": True}
    derived = {"n_budget": len(inputs.budget), "backdoored_cached": backdoored.cached, **result.derived}
    return Outcome({**metrics, **result.metrics}, {**better, **result.higher_is_better}, n=len(test.clean),
                   dataset_fingerprint=data.fingerprint(), derived=derived)
