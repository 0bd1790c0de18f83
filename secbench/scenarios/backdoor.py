"""``backdoor``: poison the training data with a trigger, train the victim, and measure the backdoor.

One run per attack (``--attack all`` runs every registered backdoor attack). The clean victim with
the same data, model and recipe comes from the shared victim cache (the ``clean`` scenario's model);
the backdoored one from :func:`secbench.scenarios.backdoored.train_backdoored`.

Metrics, higher is better from the attacker's side:
- ``clean_acc``: the backdoored model on the clean test set; ``clean_model_acc``: the clean model's.
- ``asr``: poisoned test images classified as the backdoor's target, over the images the ASR counts
  (all-to-one: those not of the target class; all-to-all: all, target y + 1). ``clean_model_asr``:
  the same for the clean model, the rate a trigger reaches without any backdoor.
- ``robust_acc`` (BackdoorBench's RA): poisoned test images still classified as their true label.
- ``psnr_db``, ``ssim``, ``l2``, ``linf``: clean against poisoned test images (8-bit), means per image;
  L2 and L∞ in [0, 1] pixel units.
- ``asr_tf_<name>``: the ASR after each test-time transformation of the poisoned images
  (:mod:`attacks.backdoor.transforms`), and ``tf_target_clean_<name>``: the clean images the ASR counts,
  put through the same transformation, that reach the target anyway. A transformation the backdoored
  model has learnt to answer with the target raises both, so an ``asr_tf`` is the trigger's own only
  where ``tf_target_clean`` stays low.
- ``blank_trigger_asr``, ``other_trigger_asr`` (Poison Ink): the ASR when the injection network hides
  a blank trigger, or another image's edges, in the same images (``BackdoorAttack.probes``): near 0
  when the backdoor keys on the image's own hidden structure, near ``asr`` when it keys on the
  network's rendering.
- ``asr_aug_<name>`` and ``clean_acc_aug_<name>``: the ASR and CA of a victim that also trained with
  that transformation as augmentation (``--train-augment``, one more training run each, off by default).

With ``--defense NAME|all`` each (attack, defense) pair is one run instead, measured from the defender's
side by :mod:`secbench.scenarios.backdoor_defense`; the record's ``defense`` field names the defense.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from attacks.backdoor import BackdoorAttack
from attacks.backdoor.base import backdoor_class
from attacks.backdoor.poison import PoisonedTest, transform_uint8
from attacks.backdoor.transforms import TRANSFORMS, parse_names, transform_images
from secbench.config import option_flag, resolve
from secbench.engine import accuracy
from secbench.metrics import psnr, ssim
from secbench.plots import image_rows
from secbench.registry import register
from secbench.scenarios.backdoor_defense import run_defense
from secbench.scenarios.backdoored import (
    BackdoorConfig,
    describe_poisoning,
    is_learned,
    load_data,
    train_backdoored,
)
from secbench.scenarios.base import Outcome, RunContext, Scenario
from secbench.scenarios.victim import PAPER_RECIPE, SMOKE_RECIPE, VictimConfig, train_victim

RESIDUAL_GAIN = 10  # the residual picture shows |poisoned - clean| x 10
_EXAMPLES = 6
SHARED_DEFENSE_SETTINGS = ("defense_data", "defense_epochs", "defense_lr")
# a learned trigger's options, named in the record's attack when they differ from the preset's
TRIGGER_SETTINGS = ("trigger_residual", "trigger_min_psnr", "trigger_extractor_output", "trigger_lr",
                    "trigger_fidelity_start", "trigger_fidelity_end", "blank_trigger_ratio")
# the victim's recipe, named in the record's method when it differs from the preset's
RECIPE_SETTINGS = ("n_train", "epochs", "train_images", "batch_size", "lr", "optimizer", "momentum", "weight_decay",
                   "schedule", "augment", "label_smoothing", "precise_bn")
POISONING_SETTINGS = ("poison_rate",)  # a defense may read it, but ``method`` already names it


def _as_option(key: str, value: Any) -> str:
    flag = option_flag(key)
    if isinstance(value, bool):
        return flag if value else flag.replace("--", "--no-", 1)
    return f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}"


def stealthiness(test: PoisonedTest) -> dict[str, float]:
    """PSNR (dB), SSIM, L2 and L∞ between the clean and the poisoned test images, means over images."""
    clean, poisoned = test.clean.floats(), test.images.float().div(255)
    delta = (poisoned - clean).flatten(1)
    return {"psnr_db": psnr(clean, poisoned).mean().item(), "ssim": ssim(clean, poisoned).mean().item(),
            "l2": delta.norm(dim=1).mean().item(), "linf": delta.abs().amax(1).mean().item()}


def trigger_robustness(model: torch.nn.Module, test: PoisonedTest, ctx: RunContext) -> dict[str, float]:
    """``asr_tf_<name>``: the ASR once every poisoned test image went through transformation ``name``;
    ``tf_target_clean_<name>``: the same rate for their clean versions under that transformation."""
    metrics = {}
    with ctx.progress.task("ASR under test-time transformations", total=len(TRANSFORMS)) as bar:
        for name in TRANSFORMS:
            for key, images in ((f"asr_tf_{name}", test.images), (f"tf_target_clean_{name}", test.clean.images)):
                transformed = transform_images(images, name, seed=ctx.seed)
                metrics[key] = accuracy(model, test.as_target(transformed), device=ctx.device)
            bar.advance(1)
    return metrics


def probe_asrs(model: torch.nn.Module, attack: BackdoorAttack, test: PoisonedTest, *,
               device: torch.device) -> dict[str, float]:
    """``<probe>_asr`` for each of the attack's probes: the ASR when the probe, not ``apply``, poisons
    the clean test images the ASR counts (all-to-one: those not of the target class)."""
    return {f"{name}_asr": accuracy(model, test.as_target(transform_uint8(test.clean.images, probe)), device=device)
            for name, probe in attack.probes().items()}


def save_examples(attack: BackdoorAttack, test: PoisonedTest, path: Path, title: str) -> None:
    """Clean, poisoned and amplified-residual versions of the first test images of distinct classes,
    and the attack's own explanatory rows."""
    labels = test.clean.labels.tolist()
    picks = [labels.index(c) for c in sorted(set(labels))][:_EXAMPLES]
    clean, poisoned = test.clean.floats()[picks], test.images[picks].float().div(255)
    image_rows({"clean": clean, "poisoned": poisoned,
                f"|residual| x{RESIDUAL_GAIN}": ((poisoned - clean).abs() * RESIDUAL_GAIN).clamp(0, 1),
                **attack.explain(clean)}, path, title=title)


@register("scenario", "backdoor")
class Backdoor(Scenario):
    """Backdoor attacks (BadNets, Blended, SIG, WaNet, Poison Ink): clean accuracy, ASR, stealthiness, trigger robustness."""

    name = "backdoor"
    version = 1
    Config = BackdoorConfig
    # paper: Poison Ink's 200 epochs of 50,000 CIFAR images at batch 32 for its injection network
    # paper defenses: Neural Cleanse's 1000 steps per label, STRIP's N = 100, NAD's 10 teacher + 20 student
    # epochs at lr 0.1, ANP's 2000 iterations (section 3 of the reference)
    presets = {"smoke": {**SMOKE_RECIPE, "trigger_steps": 4, "nc_steps": 12, "defense_epochs": 1, "strip_n": 4,
                         "nad_teacher_epochs": 1, "nad_epochs": 1, "anp_iterations": 3},
               "paper": {**PAPER_RECIPE, "model": "preact-resnet18", "trigger_steps": 312_500, "trigger_fidelity_start": 1.0,
                         "trigger_fidelity_end": 1.0, "nc_steps": 1000,
                         "strip_n": 100, "nad_teacher_epochs": 10, "nad_teacher_lr": 0.1, "nad_epochs": 20,
                         "nad_lr": 0.1, "anp_iterations": 2000}}
    headline = ("clean_acc", "clean_model_acc", "asr", "robust_acc", "psnr_db", "ssim")

    def grid(self, cfg: dict[str, Any]) -> list[dict[str, Any]]:
        config = BackdoorConfig.from_dict(cfg)
        return [{**cfg, "attack": attack, "defense": defense}
                for attack in config.attacks() for defense in config.defenses() or [""]]

    def identity(self, cfg: dict[str, Any], preset: str) -> dict[str, Any]:
        """``method`` names the poisoning and ``defense`` the defense with the settings it changes from the
        preset, so that reports never average over different rates, modes or defense settings."""
        mode = cfg["mode"] + (f"→{cfg['target']}" if cfg["mode"] == "all-to-one" else "")
        defaults = resolve(self.Config, self.presets, preset, {})
        rate_of = " of all" if cfg.get("rate_basis", "eligible") == "all" else ""
        init = " from the clean victim" if cfg.get("victim_init", "scratch") == "clean" else ""
        recipe = [k for k in RECIPE_SETTINGS if k in cfg and cfg[k] != defaults[k]]
        learned = [k for k in TRIGGER_SETTINGS if is_learned(backdoor_class(cfg["attack"])) and k in cfg and cfg[k] != defaults[k]]
        return {**super().identity(cfg, preset),
                "attack": " ".join([cfg["attack"], *(_as_option(k, cfg[k]) for k in learned)]),
                "method": ", ".join([f"{cfg['threat_model']}{init}", mode, f"rate {cfg['poison_rate']:g}{rate_of}",
                                *(_as_option(k, cfg[k]) for k in recipe)]),
                "defense": self.defense_label(cfg, preset)}

    def defense_label(self, cfg: dict[str, Any], preset: str) -> str | None:
        """The defense's name followed, as command-line options, by those of its settings (its own and the
        shared clean budget and fine-tuning) that differ from ``preset``'s: ``neural-cleanse --nc-mitigation
        pruning``. None without a defense."""
        name = cfg.get("defense")
        if not name:
            return None
        defaults = resolve(self.Config, self.presets, preset, {})
        settings = [k for k in (*SHARED_DEFENSE_SETTINGS, *self.Config.defense_settings(name))
                    if k in cfg and k not in POISONING_SETTINGS and cfg[k] != defaults[k]]
        return " ".join([name, *(_as_option(k, cfg[k]) for k in settings)])

    def run(self, cfg: dict[str, Any], ctx: RunContext) -> Outcome:
        config = BackdoorConfig.from_dict(cfg)
        data = load_data(config)  # a target the dataset lacks fails here, before any training
        if config.defense:
            return run_defense(config, train_backdoored(config, ctx, data=data), ctx)
        # Before anything draws random numbers: the clean model is then the one the clean scenario trains.
        victim = train_victim(VictimConfig.from_dict(cfg), ctx)
        backdoored = train_backdoored(config, ctx, data=data)
        model, test, device = backdoored.model, backdoored.test, ctx.device
        metrics = {
            "clean_acc": accuracy(model, data.test, device=device),
            "clean_model_acc": accuracy(victim.model, data.test, device=device),
            "asr": accuracy(model, test.as_target(), device=device),
            "clean_model_asr": accuracy(victim.model, test.as_target(), device=device),
            "robust_acc": accuracy(model, test.as_true(), device=device),
            **stealthiness(test),
            **trigger_robustness(model, test, ctx),
        }
        metrics.update(probe_asrs(model, backdoored.attack, test, device=device))
        for name in parse_names(config.train_augment):
            augmented = train_backdoored(config, ctx, train_augment=name, data=data)
            metrics[f"asr_aug_{name}"] = accuracy(augmented.model, test.as_target(), device=device)
            metrics[f"clean_acc_aug_{name}"] = accuracy(augmented.model, data.test, device=device)

        save_examples(backdoored.attack, test, ctx.artifacts / f"{config.attack}.png",
                      title=f"{config.attack} on {config.dataset}: clean, poisoned, residual")
        poisoned = backdoored.poisoned
        ctx.write_json("poisoning.json", {"index": poisoned.index.tolist(), "noise_index": poisoned.noise_index.tolist(),
                                          "attack": backdoored.attack.describe()})
        # the attacker's side: RA and the perturbation sizes are what the attacker wants small
        better = {k: k not in ("robust_acc", "l2", "linf", "clean_model_asr", "blank_trigger_asr", "other_trigger_asr")
                  and not k.startswith("tf_target_clean") for k in metrics}
        derived = {**describe_poisoning(backdoored), "epochs": len(backdoored.history["loss"]),
                   "victim_cached": victim.cached, "backdoored_cached": backdoored.cached}
        return Outcome(metrics, better, n=len(test.clean), dataset_fingerprint=data.fingerprint(), derived=derived)
