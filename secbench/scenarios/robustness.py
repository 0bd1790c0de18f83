"""``robustness``: adversarial and corruption robustness of a trained classifier.

The model is trained once per (data, model, recipe, seed) through the shared victim cache, then
attacked on a fixed, class-stratified evaluation subset of the test split. ε-bounded attacks
(FGSM, PGD, AutoAttack) sweep an L∞ grid; CW and DeepFool are minimal-perturbation attacks and
report how large their perturbations had to be; ``corruptions`` runs eight common corruptions at
five severities. ``robust_acc`` is always the accuracy under the attack (at the largest ε of the
grid, or averaged over corruptions and severities), so one report table compares all of them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from attacks.adversarial import EPS_BOUNDED
from attacks.corruptions import SEVERITIES
from secbench.config import option
from secbench.data.base import ImageSet, subsample
from secbench.engine import accuracy
from secbench.errors import SecbenchError, UnknownNameError
from secbench.models.flops import count_macs, count_params
from secbench.plots import heatmap, line_plot
from secbench.registry import create, register
from secbench.scenarios.base import Outcome, RunContext, Scenario
from secbench.scenarios.victim import DATASET_HELP, PAPER_RECIPE, SMOKE_RECIPE, VictimConfig, train_victim

ADVERSARIAL = ("fgsm", "pgd", "cw", "deepfool", "autoattack")
ATTACKS = (*ADVERSARIAL, "corruptions")
# `--model all`: the papers' efficient models next to the MobileNetV3 and ResNet-18 references.
ZOO = ("cnn-s", "mobilenet-v3-small", "resnet18", "micronet-m0", "micronet-m1", "micronet-m2", "micronet-m3",
       "mobile-former-26m", "mobile-former-52m", "mobile-former-96m", "cswin-t")
_ATTACK_BATCH = 250


@dataclass(frozen=True)
class RobustnessConfig(VictimConfig):
    """Defaults are the ``quick`` preset."""

    dataset: str = option("shapes", DATASET_HELP)
    attack: str = option("pgd", "fgsm | pgd | cw | deepfool | autoattack | corruptions, a comma list, or all")
    eps: str = option("1,2,4,8", "L-inf radii of the eps-bounded attacks, in 1/255 units, comma-separated")
    steps: int = option(10, "PGD iterations (CW and DeepFool use 5x as many: they minimise, not bound)")
    n_eval: int = option(500, "test images attacked (a fixed class-stratified subset)")

    def __post_init__(self) -> None:
        super().__post_init__()
        for attack in self.attacks():
            if attack not in ATTACKS:
                raise UnknownNameError("robustness attack", attack, (*ATTACKS, "all"))
        if not self.eps_grid() or min(self.eps_grid()) <= 0:
            raise SecbenchError(f"--eps takes positive radii in 1/255 units like 1,2,4,8, got {self.eps!r}")
        if self.steps < 1 or self.n_eval < 1:
            raise SecbenchError("--steps and --n-eval must be positive")

    def attacks(self) -> list[str]:
        return list(ATTACKS) if self.attack == "all" else [a.strip() for a in self.attack.split(",") if a.strip()]

    def models(self) -> list[str]:
        return list(ZOO) if self.model == "all" else [m.strip() for m in self.model.split(",") if m.strip()]

    def eps_grid(self) -> list[float]:
        try:
            return sorted(float(e) for e in self.eps.split(",") if e.strip())
        except ValueError:
            return []


def _attack_in_batches(attack: Any, data: ImageSet, device: torch.device) -> torch.Tensor:
    adversarial = []
    for start in range(0, len(data), _ATTACK_BATCH):
        x, y = data.batch(torch.arange(start, min(start + _ATTACK_BATCH, len(data))))
        adversarial.append(attack(x.to(device), y.to(device)).detach().cpu())
    return torch.cat(adversarial)


def _accuracy_on(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> float:
    """Accuracy on float images in [0, 1], quantised to 8 bits as a stored image would be."""
    as_uint8 = images.mul(255).round_().clamp_(0, 255).to(torch.uint8)
    return accuracy(model, ImageSet(as_uint8, labels), device=device)


@register("scenario", "robustness")
class Robustness(Scenario):
    """Adversarial (FGSM, PGD, CW, DeepFool, AA-lite) and corruption robustness of a trained classifier."""

    name = "robustness"
    version = 1
    Config = RobustnessConfig
    presets = {
        "smoke": {**SMOKE_RECIPE, "n_eval": 16, "eps": "8", "steps": 2},
        "paper": {**PAPER_RECIPE, "n_eval": 10_000, "eps": "1,2,4,8,16", "steps": 20},
    }

    headline = ("clean_acc", "robust_acc", "macs_m")

    def grid(self, cfg: dict[str, Any]) -> list[dict[str, Any]]:
        config = RobustnessConfig.from_dict(cfg)
        # Rebuilt per model, so that the training fields left unset take that model's recipe.
        return [asdict(RobustnessConfig.from_dict({**cfg, "model": m, "attack": a}))
                for m in config.models() for a in config.attacks()]

    def run(self, cfg: dict[str, Any], ctx: RunContext) -> Outcome:
        config = RobustnessConfig.from_dict(cfg)
        victim = train_victim(config, ctx)
        model, data = victim.model.eval(), victim.data
        evaluation = subsample(data.test, config.n_eval, seed=config.data_seed)
        clean = accuracy(model, evaluation, device=ctx.device)
        metrics = {"clean_acc": clean, "macs_m": count_macs(model.cpu(), data.img_size) / 1e6,
                   "params_m": count_params(model) / 1e6}
        model.to(ctx.device)
        if config.attack == "corruptions":
            metrics.update(self._corruptions(model, evaluation, clean, config, ctx))
        else:
            metrics.update(self._adversarial(model, evaluation, config, data.num_classes, ctx))
        # from the defender's side: a larger perturbation needed to fool the model is better
        better = {k: k not in ("macs_m", "params_m", "relative_drop") for k in metrics}
        return Outcome(metrics, better, n=len(evaluation), dataset_fingerprint=data.fingerprint(),
                       derived={"victim_cached": victim.cached, "epochs": len(victim.history["loss"])})

    def _adversarial(self, model: torch.nn.Module, data: ImageSet, config: RobustnessConfig, num_classes: int,
                     ctx: RunContext) -> dict[str, float]:
        name, labels, clean_images = config.attack, data.labels, data.floats()
        options: dict[str, Any] = {"seed": ctx.seed}
        if name == "pgd":
            options["steps"] = config.steps
        if name in ("cw", "deepfool"):
            options["steps"] = 5 * config.steps
        if name == "autoattack":
            options["num_classes"] = num_classes
        if name not in EPS_BOUNDED:
            adv = _attack_in_batches(create("attack", name, model=model, **options), data, ctx.device)
            delta = (adv - clean_images).flatten(1)
            return {"robust_acc": _accuracy_on(model, adv, labels, ctx.device),
                    "median_l2": delta.norm(dim=1).median().item(), "mean_linf": delta.abs().amax(1).mean().item()}
        curve: dict[str, float] = {}
        with ctx.progress.task(f"{name} over eps", total=len(config.eps_grid())) as bar:
            for eps in config.eps_grid():
                adv = _attack_in_batches(create("attack", name, model=model, eps=eps / 255, **options), data,
                                         ctx.device)
                linf = (adv - clean_images).abs().amax().item()
                if linf > eps / 255 + 1e-5:  # an attack outside its budget would make the number meaningless
                    raise RuntimeError(f"{name} exceeded its budget: L∞ {linf * 255:.3f}/255 > {eps}/255")
                curve[f"robust_acc_eps{eps:g}"] = _accuracy_on(model, adv, labels, ctx.device)
                bar.advance(1)
        line_plot(config.eps_grid(), {f"{config.model} {name}": list(curve.values())}, ctx.artifacts / "eps_curve.png",
                  xlabel="L∞ ε (×1/255)", ylabel="accuracy", title=f"{config.model} on {config.dataset}: {name}")
        return {**curve, "robust_acc": curve[f"robust_acc_eps{config.eps_grid()[-1]:g}"]}

    def _corruptions(self, model: torch.nn.Module, data: ImageSet, clean: float, config: RobustnessConfig,
                     ctx: RunContext) -> dict[str, float]:
        run = create("attack", "corruptions", seed=ctx.seed)
        names = run.names
        grid: dict[str, list[float]] = {n: [] for n in names}
        with ctx.progress.task("corruptions", total=len(names)) as bar:
            for name in names:  # one corruption at a time keeps memory flat and the bar moving
                corrupted = run.one(data.images, name)
                grid[name] = [accuracy(model, ImageSet(corrupted[s], data.labels), device=ctx.device)
                              for s in SEVERITIES]
                bar.advance(1)
        heatmap([grid[n] for n in names], names, [f"s{s}" for s in SEVERITIES], ctx.artifacts / "corruptions.png",
                title=f"{config.model} on {config.dataset}: accuracy by corruption and severity")
        ctx.write_json("corruptions.json", grid)
        mean = sum(sum(v) for v in grid.values()) / (len(names) * len(SEVERITIES))
        per_name = {f"acc_{n.replace('-', '_')}": sum(v) / len(v) for n, v in grid.items()}
        return {"robust_acc": mean, "mean_corruption_acc": mean,
                "relative_drop": (clean - mean) / clean if clean > 0 else 0.0, **per_name}
