"""The backdoored classifier: poisoning, the victim's training under either threat model, and its cache.

``train_backdoored(cfg, ctx)`` is what the backdoor scenario and the backdoor defenses share: the
attacked model, trained once per (victim fields, attack and its options, poisoning, threat model,
extra augmentation, seed, device) and cached beside the clean victims in ``ctx.cache``, together with
everything a defense needs to judge itself: the clean data, the poisoned training set with the
positions of its poisoned images, and the poisoned test set.

Threat models:
- ``data-poisoning``: the attacker only supplies data. The victim trains on the poisoned training set
  with its own recipe (pad-crop and flip, the shared victim fields), as if it were clean.
- ``training-controlled``: the attacker runs the training, as the official Poison Ink code does. The
  training set stays clean and every clean batch gets a batch of poisoned images appended
  (:class:`attacks.backdoor.poison.PairedPoison`); the victim's augmentation still applies to both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from attacks.backdoor import BackdoorAttack, backdoor_attack_names, backdoor_class
from attacks.backdoor.poison import (
    RATE_BASES,
    PairedPoison,
    PoisonedSet,
    PoisonedTest,
    check_mode,
    check_setting,
    poison_count,
    poison_test_set,
    poison_training_set,
)
from attacks.backdoor.transforms import AugmentBatches, parse_names
from defenses.backdoor.base import backdoor_defense_class, backdoor_defense_names
from defenses.backdoor.neural_cleanse import MITIGATIONS
from secbench import checkpoint
from secbench.config import config_hash, option
from secbench.data import DataSplits, ImageSet, load_dataset
from secbench.engine import BatchHook, fit
from secbench.errors import SecbenchError, UnknownNameError
from secbench.hiding import EXTRACTOR_OUTPUTS, RESIDUALS
from secbench.registry import create, create_model
from secbench.scenarios.base import RunContext
from secbench.scenarios.victim import DATASET_HELP, VictimConfig, train_victim

THREAT_MODELS = ("data-poisoning", "training-controlled")
VICTIM_INITS = ("scratch", "clean")


@dataclass(frozen=True)
class BackdoorConfig(VictimConfig):
    """Victim fields plus the attack. Defaults are the ``quick`` preset."""

    dataset: str = option("shapes", DATASET_HELP)
    # 8 epochs on shapes: after the shared recipe's 3, poisoned victims were far from converged (BadNets
    # 6.8 points of clean accuracy below the clean model), after 8 within a point (README, results)
    train_images: int = option(80_000, "training budget in images seen, used when --epochs is not given", low=1)
    attack: str = option("badnets", "a backdoor attack (badnets | blended | sig | wanet | poison-ink), a comma list, or all")
    poison_rate: float = option(0.1, "fraction of the eligible training images poisoned: those not of the "
                                     "target class (all-to-one), all (all-to-all), the target class (clean-label)")
    rate_basis: str = option("eligible", "what --poison-rate counts: eligible (the images that may be poisoned) | "
                                         "all (the whole training set, as BackdoorBench counts it)")
    target: int = option(0, "target class of all-to-one poisoning")
    mode: str = option("all-to-one", "all-to-one | all-to-all (label y -> y+1 mod C)")
    threat_model: str = option("data-poisoning", "data-poisoning (the victim trains on poisoned data) | "
                                                 "training-controlled (each clean batch paired with a poisoned one)")
    victim_init: str = option("scratch", "the backdoored victim's starting weights: scratch | clean (fine-tune the "
                                         "clean victim, which a training-controlled attacker may do)")
    train_augment: str = option("", "extra victim augmentations, each one more training run: flip, crop, rotate, "
                                    "resize, jpeg, blur, noise, color, a comma list, or all")
    trigger_steps: int = option(1500, "updates of a learned trigger's networks (poison-ink's injection network)", low=1)
    trigger_residual: str = option("free", "poison-ink's injection output: free (the official sigmoid image) | "
                                           "bounded (PSNR >= --trigger-min-psnr by construction)")
    trigger_min_psnr: float = option(36.0, "with --trigger-residual bounded: the PSNR every poisoned image keeps (dB)", positive=True)
    trigger_extractor_output: str = option("relu", "poison-ink's guidance extractor's last activation: relu (official) "
                                                   "| linear")
    trigger_lr: float = option(2e-4, "poison-ink: Adam learning rate of its networks (official 2e-4)", positive=True)
    trigger_fidelity_start: float = option(0.05, "poison-ink: weight of the injection MSE at the start (ramped "
                                                 "geometrically; official 1 throughout)", positive=True)
    trigger_fidelity_end: float = option(30.0, "poison-ink: ... and at the end", positive=True)
    blank_trigger_ratio: float = option(0.0, "poison-ink: covers rendered by the injection network with a blank "
                                             "trigger, true labels kept, per poisoned image (a noise mode; 0: the paper)")
    defense: str = option("", "backdoor defenses applied to the backdoored model (neural-cleanse, strip, "
                              "spectral-signatures, activation-clustering, fine-pruning, nad, anp), a comma list, "
                              "or all; empty: measure the attack alone")
    defense_data: float = option(0.05, "the defender's clean data, a fraction of the training set (every defense)")
    defense_epochs: int = option(10, "fine-tuning epochs on the clean data (unlearning, fine-pruning)")
    defense_lr: float = option(0.01, "peak learning rate of that fine-tuning", positive=True)
    nc_steps: int = option(300, "neural-cleanse: optimisation steps per label (batch 32)")
    sequential: bool = option(False, "neural-cleanse: optimise one label after the other (the original loop) "
                                     "instead of all labels in one batched run")
    nc_mitigation: str = option("unlearning", "neural-cleanse: unlearning (fine-tune with the reversed trigger "
                                              "stamped, true labels) | pruning (zero the last-conv channels it "
                                              "excites most)")
    strip_n: int = option(20, "strip: clean images superimposed on each input")
    ss_poison_rate: float = option(0.0, "spectral-signatures: the poison rate the defender assumes, an upper "
                                        "bound (1.5x it is removed per class); 0: the attack's --poison-rate", high=1)
    prune_drop: float = option(0.1, "fine-pruning: prune while clean accuracy on the defender's data stays "
                                    "within this relative drop", high=1)
    nad_teacher_epochs: int = option(10, "nad: epochs of the teacher's fine-tuning on the clean data")
    nad_teacher_lr: float = option(0.1, "nad: peak learning rate of the teacher's fine-tuning", positive=True)
    nad_epochs: int = option(20, "nad: epochs of attention distillation into the backdoored model")
    # quick 0.01: cnn-s's student diverged at 0.1, 0.05 and 0.02 (its attention loss grew from 0.5 to 10-40)
    nad_lr: float = option(0.01, "nad: peak learning rate of the distillation", positive=True)
    anp_iterations: int = option(300, "anp: mask-optimisation iterations (batches of 128 clean images)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.threat_model not in THREAT_MODELS:
            raise UnknownNameError("--threat-model", self.threat_model, THREAT_MODELS)
        if self.victim_init not in VICTIM_INITS:
            raise UnknownNameError("--victim-init", self.victim_init, VICTIM_INITS)
        if self.victim_init == "clean" and self.threat_model != "training-controlled":
            raise SecbenchError("--victim-init clean fine-tunes the clean victim, which only the attacker who runs "
                                "the training can do: add --threat-model training-controlled")
        if self.trigger_residual not in RESIDUALS:
            raise UnknownNameError("--trigger-residual", self.trigger_residual, RESIDUALS)
        if self.trigger_extractor_output not in EXTRACTOR_OUTPUTS:
            raise UnknownNameError("--trigger-extractor-output", self.trigger_extractor_output, tuple(EXTRACTOR_OUTPUTS))
        if self.blank_trigger_ratio < 0 or min(self.trigger_min_psnr, self.trigger_lr, self.trigger_fidelity_start,
                                               self.trigger_fidelity_end) <= 0:
            raise SecbenchError("--blank-trigger-ratio must be >= 0 and --trigger-min-psnr, --trigger-lr and "
                                "--trigger-fidelity-start/-end positive")
        if not 0.0 < self.poison_rate <= 1.0:
            raise SecbenchError(f"--poison-rate must be in (0, 1], got {self.poison_rate}")
        if self.rate_basis not in RATE_BASES:
            raise UnknownNameError("--rate-basis", self.rate_basis, RATE_BASES)
        if self.target < 0:
            raise SecbenchError(f"--target must be a class index, got {self.target}")
        parse_names(self.train_augment)
        for name in self.attacks():
            check_mode(backdoor_class(name), self.mode)
        if not 0.0 < self.defense_data <= 1.0:
            raise SecbenchError(f"--defense-data must be in (0, 1], got {self.defense_data}")
        if min(self.defense_epochs, self.nc_steps, self.strip_n) < 1 or self.defense_lr <= 0:
            raise SecbenchError("--defense-epochs, --nc-steps, --strip-n and --defense-lr must be positive")
        if self.nc_mitigation not in MITIGATIONS:
            raise UnknownNameError("--nc-mitigation", self.nc_mitigation, MITIGATIONS)
        if not 0.0 <= self.prune_drop < 1.0:
            raise SecbenchError(f"--prune-drop must be in [0, 1), got {self.prune_drop}")
        if min(self.nad_teacher_epochs, self.nad_epochs, self.anp_iterations) < 1 or min(self.nad_lr, self.nad_teacher_lr) <= 0:
            raise SecbenchError("--nad-teacher-epochs, --nad-epochs, --anp-iterations, --nad-lr and --nad-teacher-lr "
                                "must be positive")
        if not 0.0 <= self.ss_poison_rate <= 1.0:
            raise SecbenchError(f"--ss-poison-rate must be in [0, 1], got {self.ss_poison_rate}")
        for name in self.defenses():
            if backdoor_defense_class(name).needs_training_set and self.threat_model == "training-controlled":
                raise SecbenchError(f"{name} filters the training set the victim trained on; under "
                                    "--threat-model training-controlled the attacker trained it, so it does not apply")

    @classmethod
    def defense_settings(cls, name: str) -> tuple[str, ...]:
        """The options of defense ``name`` that this config sets (the command line exposes them); its other
        options keep their defaults, the paper's."""
        settable = {f.name for f in fields(cls)}
        return tuple(k for k in backdoor_defense_class(name).options() if k in settable)

    def attacks(self) -> list[str]:
        names = [a.strip() for a in self.attack.split(",") if a.strip()]
        if names == ["all"]:
            return backdoor_attack_names()
        if not names:
            raise SecbenchError("--attack is empty; give e.g. --attack badnets")
        return names

    def defenses(self) -> list[str]:
        """The defenses to run, one run each; none when ``--defense`` is empty. ``all`` leaves out the
        training-data filters under the training-controlled threat model (the defender holds no training set)."""
        names = [d.strip() for d in self.defense.split(",") if d.strip()]
        if names != ["all"]:
            return names
        controlled = self.threat_model == "training-controlled"
        return [n for n in backdoor_defense_names() if not (controlled and backdoor_defense_class(n).needs_training_set)]


@dataclass
class Backdoored:
    """A backdoored model and the data behind it. ``data``: the clean splits; ``poisoned``: the training
    set as the attacker prepared it (the victim trained on ``poisoned.data`` under data poisoning);
    ``test``: the poisoned test images the ASR counts; ``history``: of the original training."""

    model: nn.Module
    attack: BackdoorAttack
    data: DataSplits
    poisoned: PoisonedSet
    test: PoisonedTest
    history: dict[str, list[float]]
    cached: bool


def _chain(hooks: Sequence[BatchHook]) -> BatchHook | None:
    if not hooks:
        return None

    def run(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for hook in hooks:
            images, labels = hook(images, labels)
        return images, labels

    return run


def load_data(cfg: BackdoorConfig) -> DataSplits:
    """The clean splits of ``cfg``, after checking that its attack, mode and target suit them."""
    data = load_dataset(cfg.dataset, seed=cfg.data_seed, n_train=cfg.n_train, n_test=cfg.n_test)
    attack = backdoor_class(cfg.attack)
    check_setting(attack, mode=cfg.mode, target=cfg.target, num_classes=data.num_classes)
    poison_count(data.train.labels, attack, rate=cfg.poison_rate, mode=cfg.mode, target=cfg.target,
                 basis=cfg.rate_basis)
    return data


def train_backdoored(cfg: BackdoorConfig, ctx: RunContext, *, train_augment: str = "",
                     data: DataSplits | None = None) -> Backdoored:
    """The victim ``cfg.model`` backdoored by ``cfg.attack`` (one attack), trained with the extra
    augmentation ``train_augment`` (a transform name, or "" for none), or loaded from ``ctx.cache`` when
    an earlier run trained the same one. ``data``: the splits of ``cfg`` if already loaded.

    Deterministic per ``ctx.seed`` whatever ran before in the process: the poisoning, the weight
    initialisation and the batch order each draw from their own generator seeded with it.
    """
    name = cfg.attack
    data = data or load_data(cfg)
    trigger: BackdoorAttack = create("attack", name, seed=ctx.seed, **_trigger_options(backdoor_class(name), cfg))
    trigger.prepare(data.train, ctx)
    setting = {"rate": cfg.poison_rate, "mode": cfg.mode, "target": cfg.target, "num_classes": data.num_classes,
               "basis": cfg.rate_basis}
    poisoned = poison_training_set(data.train, trigger, **setting, seed=ctx.seed)
    test = poison_test_set(data.test, trigger, mode=cfg.mode, target=cfg.target, num_classes=data.num_classes)

    key = {"victim": {f.name: getattr(cfg, f.name) for f in fields(VictimConfig)}, "attack": trigger.describe(),
           "poisoning": setting, "threat_model": cfg.threat_model, "train_augment": train_augment,
           "seed": ctx.seed, "device": ctx.device.type, "init": cfg.victim_init}
    suffix = f"-{train_augment}" if train_augment else ""
    entry = ctx.cache / f"backdoored-{cfg.model}-{name}{suffix}-{config_hash(key).split(':')[1][:16]}"
    if cached := checkpoint.load_entry(entry, ctx.device):
        return Backdoored(cached[0], trigger, data, poisoned, test, cached[1], cached=True)

    hooks: list[BatchHook] = []
    if cfg.threat_model == "training-controlled":
        inputs = data.train
        hooks.append(PairedPoison(poisoned.pool, seed=ctx.seed))
    else:
        inputs = poisoned.data
    if train_augment:
        hooks.append(AugmentBatches(train_augment, seed=ctx.seed))
    init = train_victim(VictimConfig.from_dict(asdict(cfg)), ctx).model if cfg.victim_init == "clean" else None
    model, history = fit_victim(cfg, data, inputs, ctx, batch_hook=_chain(hooks), init=init,
                                description=f"train {cfg.model} backdoored by {name}"
                                            f"{f' (+{train_augment})' if train_augment else ''}")
    checkpoint.save_entry(entry, model, history, name=cfg.model, **_build_args(data))
    return Backdoored(model, trigger, data, poisoned, test, history, cached=False)


def _build_args(data: DataSplits) -> dict[str, Any]:
    return {"num_classes": data.num_classes, "img_size": data.img_size, "mean": data.mean, "std": data.std}


def fit_victim(cfg: BackdoorConfig, data: DataSplits, inputs: ImageSet, ctx: RunContext, *,
               batch_hook: BatchHook | None = None, init: nn.Module | None = None,
               description: str) -> tuple[nn.Module, dict[str, list[float]]]:
    """A fresh ``cfg.model`` for ``data`` (with ``init``'s weights if given) trained on ``inputs`` with the
    victim's recipe, and its history.

    The recipe is the one for the whole training set, ``cfg.train_config(len(data.train))``, so a subset
    (a training-data filter's kept images) trains for the same epochs. The weight initialisation and the
    batch order each draw from their own generator seeded with ``ctx.seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.seed)
        model = create_model(cfg.model, **_build_args(data))
    if init is not None:
        model.load_state_dict(init.state_dict())
    history = fit(model, inputs, cfg.train_config(len(data.train)), generator=torch.Generator().manual_seed(ctx.seed),
                  device=ctx.device, progress=ctx.progress, batch_hook=batch_hook, description=description)
    return model, history


def is_learned(attack: type[BackdoorAttack]) -> bool:
    """Whether ``attack`` trains networks for its trigger (it has a ``steps`` budget)."""
    return "steps" in {f.name for f in fields(attack)}


def _trigger_options(attack: type[BackdoorAttack], cfg: BackdoorConfig) -> dict[str, Any]:
    """The options of a learned trigger (an attack with a ``steps`` field: its networks' budget and
    shape, its blank-trigger noise mode); none for fixed triggers, which keep their own noise modes."""
    if not is_learned(attack):
        return {}
    return {"steps": cfg.trigger_steps, "residual": cfg.trigger_residual, "min_psnr": cfg.trigger_min_psnr,
            "extractor_output": cfg.trigger_extractor_output, "noise_ratio": cfg.blank_trigger_ratio,
            "lr": cfg.trigger_lr, "fidelity_start": cfg.trigger_fidelity_start, "fidelity_end": cfg.trigger_fidelity_end}


def describe_poisoning(backdoored: Backdoored) -> dict[str, Any]:
    """Counts for the record's ``derived``: poisoned and noise-mode training images, ASR test images."""
    poisoned = backdoored.poisoned
    return {"n_poisoned": len(poisoned.index), "n_noise": len(poisoned.noise_index),
            "poisoned_fraction": len(poisoned.index) / len(poisoned.data), "n_asr_test": len(backdoored.test.clean)}
