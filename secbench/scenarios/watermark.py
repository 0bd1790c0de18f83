"""``watermark``: does a model watermark survive a thief who trains a surrogate on the API's outputs?

The owner trains an image-processing model M (a UNet for deraining or denoising) on its split and
serves it through an API that marks every output (``defenses/watermark``). The thief queries the
API with a disjoint split, trains a surrogate on (query, answer) pairs, optionally augmenting each
pair (``attacks/augment.py``) or fine-tuning / pruning the surrogate afterwards
(``attacks/surrogate.py``). The owner's extractor then reads the surrogate's outputs on test
images neither saw, and must read nothing in the outputs of an independently trained clean
model or in natural images.

M, the independent clean model and each method's H and R are trained once per (data, task,
recipe, seed) and cached; every further attack costs one surrogate training.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attacks.augment import AUGMENTATIONS
from attacks.surrogate import CONTENT_LOSSES, build_surrogate, image_train_config, train_image_model
from defenses.watermark.methods import hex_colour, least_confusable_key
from defenses.watermark.owner import OwnerRecipe, Protection, Reading, protect, quantize
from secbench import checkpoint
from secbench.config import LARGEST, check_number, option
from secbench.data import check_spec, load_dataset
from secbench.errors import SecbenchError, UnknownNameError
from secbench.hiding import EXTRACTOR_OUTPUTS, RESIDUALS, TARGETS
from secbench.imageops import add_gaussian_noise, add_rain, edge_mask, to_uint8
from secbench.metrics import auroc, psnr, ssim
from secbench.models.imaging import IMAGE_MODELS, UNet
from secbench.plots import image_rows
from secbench.registry import create, get, register
from secbench.scenarios.base import Outcome, RunContext, Scenario

TASKS = ("derain", "denoise")
METHODS = ("none", "baseline", "structure")
REMOVALS = ("finetune", "prune")
ATTACKS = tuple(name.removeprefix("aug-") for name in AUGMENTATIONS) + REMOVALS
_BATCH = 256
_TEST_POOL = 4  # candidate test patches per one kept, for the --min-edges filter on generated patches


@dataclass(frozen=True)
class WatermarkConfig:
    """Defaults are the ``quick`` preset (minutes on 2 CPU cores)."""

    task: str = option("derain", "the protected model's task: derain (synthetic rain streaks) | denoise (Gaussian)")
    dataset: str = option("patches", "patches (bundled photos) | imagefolder:PATH (your own photos)")
    method: str = option("none,baseline,structure", "none | baseline | structure, a comma list, or all")
    attack: str = option("none", f"{' | '.join(ATTACKS)}, a comma list, or all")
    attack_options: str = option("", "the attack's strength, e.g. degrees=30 or scale=0.75:1.0 (see secbench list attacks)")
    surrogate: str = option("unet", "the thief's surrogate: unet | resnet9 | dilated")
    loss: str = option("l1", "the thief's content loss: l1 | l2")
    watermark: str = option("", "PNG of the baseline's watermark (default: a generated logo)")
    key: str = option("auto", "the structure watermark's key colour: hex RGB (e.g. #f07814) | auto (of 12 hues, "
                              "the one fewest of the owner's answers carry on their edges)")
    structure_target: str = option("soft", "the structure mark's strength: soft (Sobel strength, the quick default) | "
                                           "binary (thresholded edges, as Poison Ink's code)")
    residual: str = option("bounded", "H's output: bounded (cover + a residual with a guaranteed PSNR, the quick "
                                      "default) | free (the official sigmoid image)")
    extractor_output: str = option("linear", "R's last activation: linear (the quick default: cannot die) | relu "
                                             "(the official R)")
    min_psnr: float = option(36.0, "with --residual bounded: the PSNR every marked answer is guaranteed (dB)")
    start_psnr: float = option(36.0, "with --residual bounded: the guaranteed PSNR when stage 1 starts, moved "
                                     "linearly to --min-psnr (a curriculum; equal: none)")
    threshold: float = option(0.95, "NC at or above which an extraction counts as the watermark")
    min_amplitude: float = option(0.0, "... and the least strength of the expected mark in it (0: NC alone, the "
                                       "papers' rule)")
    noise_sigma: float = option(0.1, "denoise task: std of the Gaussian noise, on the 0-1 scale")
    data_seed: int = option(0, "seed of the data split and degradations; fixed while training seeds vary")
    patch_size: int = option(32, "side of the square image patches (a multiple of 16)", low=16, high=1024)
    n_owner: int = option(1000, "the owner's training images (M, H, R and its stage-2 surrogate)")
    n_attacker: int = option(1000, "the thief's query images (disjoint from the owner's)")
    n_test: int = option(200, "test images, from photos neither side trained on")
    min_edges: float = option(0.02, "verification queries: those whose clean answer has this fraction of edge "
                                    "pixels (0: any)")
    width: int = option(16, "base channels of M, H, D and the surrogates (official 64)")
    extractor_width: int = option(16, "channels of the extractor R (official 128)")
    task_epochs: int = option(30, "epochs of M and of the independent clean model")
    hiding_steps: int = option(1500, "stage-1 updates of H, R and D (batch 16)")
    hiding_lr: float = option(1e-3, "Adam learning rate of stage 1 (official 2e-4, for 75,000 steps)")
    fidelity_start: float = option(1.0, "weight of H's fidelity MSE at the start of stage 1 (ramped geometrically)")
    fidelity_end: float = option(1.0, "... and at its end (the official code: 1 throughout)")
    tune_steps: int = option(2000, "stage-2 updates of R on the owner's own surrogates (official 20,000)")
    tune_lr: float = option(1e-3, "Adam learning rate of stage 2 (official 1e-4)")
    owner_attacks: str = option("none", "stage 2: the augmentation of each of the owner's own surrogates, a comma "
                                        "list (none: one plain surrogate, as the paper)")
    unmarked_surrogate: bool = option(False, "stage 2: also train a surrogate on the owner's unmarked answers and "
                                             "add its outputs to R's blanks (not in the paper)")
    surrogate_epochs: int = option(20, "epochs of every surrogate (the owner's and the thief's)")
    finetune_epochs: int = option(5, "finetune attack: epochs on the thief's clean pairs")
    prune_amount: float = option(0.5, "prune attack: fraction of convolution weights zeroed")

    def __post_init__(self) -> None:
        check_spec(self.dataset)
        if self.watermark and not Path(self.watermark).is_file():
            raise SecbenchError(f"--watermark {self.watermark}: no such file; give a PNG or JPEG (or leave it out)")
        if self.task not in TASKS:
            raise UnknownNameError("task", self.task, TASKS)
        for name in self.methods():
            if name not in METHODS:
                raise UnknownNameError("watermark method", name, (*METHODS, "all"))
        for name in self.attacks():
            if name not in ATTACKS:
                raise UnknownNameError("watermark attack", name, (*ATTACKS, "all"))
        augmentations = tuple(a for a in ATTACKS if a not in REMOVALS)
        for name in self.owner_attack_list():
            if name not in augmentations:
                raise UnknownNameError("owner's surrogate augmentation", name, augmentations)
        if self.surrogate not in IMAGE_MODELS:
            raise UnknownNameError("surrogate", self.surrogate, IMAGE_MODELS)
        if self.loss not in CONTENT_LOSSES:
            raise UnknownNameError("surrogate loss", self.loss, CONTENT_LOSSES)
        if self.patch_size < 16 or self.patch_size % 16:
            raise SecbenchError(f"--patch-size must be a multiple of 16 (the discriminator's stride), got {self.patch_size}")
        if not 0 <= self.min_edges < 1:
            raise SecbenchError(f"--min-edges is a fraction of pixels in [0, 1), got {self.min_edges}")
        if not 0 < self.threshold <= 1:
            raise SecbenchError(f"--threshold is an NC in (0, 1], got {self.threshold}")
        if not 0 <= self.min_amplitude <= 1:
            raise SecbenchError(f"--min-amplitude is a share of the mark's strength in [0, 1], got {self.min_amplitude}")
        counts = (self.n_owner, self.n_attacker, self.n_test, self.width, self.extractor_width, self.task_epochs,
                  self.hiding_steps, self.tune_steps, self.surrogate_epochs, self.finetune_epochs)
        if min(counts) < 1 or min(self.fidelity_start, self.fidelity_end) <= 0:
            raise SecbenchError("sizes, epochs, steps and fidelity weights must be positive")
        if not 0 <= self.prune_amount < 1:
            raise SecbenchError(f"--prune-amount is a fraction in [0, 1), got {self.prune_amount}")
        if self.structure_target not in TARGETS:
            raise UnknownNameError("structure target", self.structure_target, TARGETS)
        if self.residual not in RESIDUALS:
            raise UnknownNameError("embedder residual", self.residual, RESIDUALS)
        if self.extractor_output not in EXTRACTOR_OUTPUTS:
            raise UnknownNameError("extractor output", self.extractor_output, tuple(EXTRACTOR_OUTPUTS))
        if min(self.min_psnr, self.start_psnr, self.hiding_lr, self.tune_lr) <= 0:
            raise SecbenchError("--min-psnr, --start-psnr, --hiding-lr and --tune-lr must be positive")
        self.key_rgb()
        self.attack_kwargs()

    def methods(self) -> list[str]:
        return _names(self.method, METHODS)

    def attacks(self) -> list[str]:
        return _names(self.attack, ATTACKS)

    def owner_attack_list(self) -> tuple[str, ...]:
        return tuple(_names(self.owner_attacks, ()))

    def key_rgb(self) -> tuple[float, float, float] | None:
        """The ``--key`` colour, or None for ``auto`` (chosen from the owner's answers: :func:`structure_key`)."""
        if self.key == "auto":
            return None
        text = self.key.removeprefix("#")
        try:
            if len(text) != 6:
                raise ValueError
            r, g, b = (int(text[i : i + 2], 16) / 255 for i in (0, 2, 4))
        except ValueError:
            raise SecbenchError(f"--key is auto or a hex colour like #f07814, got {self.key!r}") from None
        return r, g, b

    def attack_kwargs(self) -> dict[str, Any]:
        """``--attack-options`` as keyword arguments: ``a=1,b=0.5:1`` → ``{"a": 1.0, "b": (0.5, 1.0)}``."""
        kwargs: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in self.attack_options.split(","))):
            name, sep, value = item.partition("=")
            try:
                if not sep or not name.strip():
                    raise ValueError
                numbers = tuple(float(v) for v in value.split(":"))
            except ValueError:
                raise SecbenchError(f"--attack-options takes name=value pairs like degrees=30,scale=0.5:1, "
                                    f"got {item!r}") from None
            for number in numbers:
                check_number(f"--attack-options {name.strip()}", number, low=-LARGEST)
            kwargs[name.strip()] = numbers if len(numbers) > 1 else numbers[0]
        for attack in self.attacks() if kwargs else ():  # each attack is built with every option
            params = inspect.signature(get("attack", attack_name(attack)).load()).parameters
            if not any(p.kind is p.VAR_KEYWORD for p in params.values()) and (unknown := sorted(set(kwargs) - set(params))):
                raise UnknownNameError(f"--attack-options of attack {attack}:", unknown[0],
                                       [p for p in params if p != "seed"])
        return kwargs

    def owner_recipe(self) -> OwnerRecipe:
        return OwnerRecipe(width=self.width, extractor_width=self.extractor_width,
                           depth=int(math.log2(self.patch_size)) - 1, steps=self.hiding_steps, batch_size=16,
                           fidelity=(self.fidelity_start, self.fidelity_end), surrogate="unet",
                           surrogate_epochs=self.surrogate_epochs, tune_steps=self.tune_steps, tune_lr=self.tune_lr,
                           residual=self.residual, min_psnr=self.min_psnr, start_psnr=self.start_psnr,
                           lr=self.hiding_lr, extractor_output=self.extractor_output,
                           owner_attacks=self.owner_attack_list(), unmarked_surrogate=self.unmarked_surrogate)

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> WatermarkConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in cfg.items() if k in names})


def attack_name(attack: str) -> str:
    """The registry name of a watermark ``--attack``: a removal by its name, an augmentation as ``aug-NAME``."""
    return attack if attack in REMOVALS else f"aug-{attack}"


def _names(value: str, valid: tuple[str, ...]) -> list[str]:
    return list(valid) if value == "all" else [v.strip() for v in value.split(",") if v.strip()]


@dataclass(frozen=True)
class TaskData:
    """Float ``(N, 3, H, W)`` images in [0, 1]: degraded inputs and clean targets of each split."""

    owner: tuple[torch.Tensor, torch.Tensor]
    attacker: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]  # candidate queries: see :func:`verification_queries`
    fingerprint: str


def verification_queries(answers: torch.Tensor, n: int, min_edges: float) -> torch.Tensor:
    """Indices of the first ``n`` candidate test queries whose clean answer ``(N, 3, H, W)`` has at
    least ``min_edges`` edge pixels. The owner verifies with queries of its choosing; the structure
    mark lives on edges, so a flat answer carries none. The same queries serve every method."""
    structured = (edge_mask(answers).float().mean((1, 2, 3)) >= min_edges).nonzero().squeeze(1)
    if len(structured) < n:
        raise SecbenchError(f"only {len(structured)} of {len(answers)} candidate test queries get an answer with "
                            f"{min_edges:.0%} edge pixels, {n} needed; lower --min-edges or --n-test")
    return structured[:n]


def _test_candidates(cfg: WatermarkConfig) -> int | None:
    """How many test images to load: ``n_test`` when any query will do; with ``--min-edges``, every photo
    of a local folder (the owner picks its queries among all it has) or ``_TEST_POOL × n_test`` patches."""
    if cfg.min_edges == 0:
        return cfg.n_test
    return None if cfg.dataset.startswith("imagefolder:") else _TEST_POOL * cfg.n_test


def task_data(cfg: WatermarkConfig) -> TaskData:
    """The owner's and the thief's splits (disjoint crops of the training photos) and the test split
    (other photos), each degraded by the task with a generator seeded by ``data_seed``."""
    pool = _test_candidates(cfg)
    size = ({"patch_size": cfg.patch_size} if cfg.dataset == "patches"
            else {"img_size": cfg.patch_size} if cfg.dataset.startswith("imagefolder:") else {})
    splits = load_dataset(cfg.dataset, min_classes=1, seed=cfg.data_seed, n_train=cfg.n_owner + cfg.n_attacker,
                          n_test=pool, **size)
    if splits.img_size != cfg.patch_size or splits.train.images.shape[1] != 3:
        raise SecbenchError(f"{cfg.dataset}: the watermark scenario needs RGB {cfg.patch_size}×{cfg.patch_size} "
                            f"images, got {tuple(splits.train.images.shape[1:])}; pass --patch-size to match")
    generator = torch.Generator().manual_seed(cfg.data_seed)
    train, test = splits.train.floats(), splits.test.floats()

    def degrade(clean: torch.Tensor) -> torch.Tensor:
        if cfg.task == "derain":
            return add_rain(clean, generator=generator)
        return add_gaussian_noise(clean, sigma=cfg.noise_sigma, generator=generator)

    def pair(clean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return quantize(degrade(clean)), clean

    return TaskData(pair(train[: cfg.n_owner]), pair(train[cfg.n_owner :]), pair(test), splits.fingerprint())


@torch.no_grad()
def apply(model: nn.Module, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``model`` on float images, batched, rounded to 8 bits: ``(N, 3, H, W)`` on the CPU."""
    model.eval()
    return quantize(torch.cat([model(b.to(device)).float().cpu() for b in images.split(_BATCH)]))


def _task_model(cfg: WatermarkConfig, pair: tuple[torch.Tensor, torch.Tensor], role: str, ctx: RunContext
                ) -> nn.Module:
    """A UNet for the task trained on ``pair`` (cached): the owner's M, or the independent clean model."""
    model = UNet(3, 3, width=cfg.width, depth=int(math.log2(cfg.patch_size)) - 1, norm="instance")
    payload = {"role": role, "data": _data_fields(cfg), "width": cfg.width, "epochs": cfg.task_epochs}
    entry = ctx.cache_entry(f"watermark-{role}", payload)
    if checkpoint.load_modules(entry, {"model": model}, ctx.device) is not None:
        return model
    generator = ctx.stream(role)  # the independent model differs in data and initialisation
    model = UNet(3, 3, width=cfg.width, depth=int(math.log2(cfg.patch_size)) - 1, norm="instance")
    history = train_image_model(model, to_uint8(pair[0]), to_uint8(pair[1]), image_train_config(cfg.task_epochs), loss="l1",
                                generator=generator, device=ctx.device, progress=ctx.progress,
                                description=f"train {role} ({cfg.task})")
    checkpoint.save_modules(entry, {"model": model}, history)
    return model


def model_answers(cfg: WatermarkConfig, data: TaskData, ctx: RunContext
                  ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
    """The unmarked model M's answers to the owner's and the thief's inputs, and the verification
    queries: (test inputs, their ground truth, M's answers, the independent clean model's answers)."""
    owner_model = _task_model(cfg, data.owner, "owner-model", ctx)
    clean_model = _task_model(cfg, data.attacker, "clean-model", ctx)
    owner_out, thief_out, test_out = (apply(owner_model, x[0], ctx.device) for x in (data.owner, data.attacker, data.test))
    queries = verification_queries(test_out, cfg.n_test, cfg.min_edges)
    test_in, test_gt = data.test[0][queries], data.test[1][queries]
    return owner_out, thief_out, (test_in, test_gt, test_out[queries], apply(clean_model, test_in, ctx.device))


def _data_fields(cfg: WatermarkConfig) -> dict[str, Any]:
    names = ("task", "dataset", "noise_sigma", "data_seed", "patch_size", "n_owner", "n_attacker", "n_test")
    return {name: getattr(cfg, name) for name in names}


def structure_key(cfg: WatermarkConfig, covers: torch.Tensor) -> tuple[float, float, float]:
    """The structure mark's key: ``--key``, or with ``auto`` the least confusable one for the owner's
    model's answers ``covers`` (:func:`~defenses.watermark.methods.least_confusable_key`)."""
    return cfg.key_rgb() or least_confusable_key(covers)[0]


def _protection(cfg: WatermarkConfig, method: str, owner: tuple[torch.Tensor, torch.Tensor], covers: torch.Tensor,
                ctx: RunContext) -> Protection:
    """``method``'s networks trained on the owner's split ``owner`` (inputs, ground truth) and its model's
    outputs ``covers`` (cached)."""
    options = ({"size": cfg.patch_size, "watermark": cfg.watermark} if method == "baseline"
               else {"key": structure_key(cfg, covers), "target": cfg.structure_target})
    recipe = cfg.owner_recipe()
    entry = ctx.cache_entry(f"watermark-{method}-owner",
                            {"data": _data_fields(cfg), "method": method, "options": options,
                             "recipe": asdict(recipe), "task_epochs": cfg.task_epochs,
                             "stage2_unmarked": "outputs,inputs,truth"})
    inputs, truth = owner
    return protect(create("defense", f"watermark-{method}", **options), recipe, covers, inputs, truth, entry=entry,
                   generator=ctx.stream("owner", method), device=ctx.device, progress=ctx.progress)


def _steal(cfg: WatermarkConfig, queries: torch.Tensor, answers: torch.Tensor, clean_pair: tuple[torch.Tensor, ...],
           attack: str, ctx: RunContext) -> nn.Module:
    """The thief's surrogate: trained on (queries, API answers) under ``attack``."""
    generator = ctx.stream("thief", attack)
    augmentation = None
    if attack not in REMOVALS:
        augmentation = create("attack", attack_name(attack), seed=ctx.seed, **cfg.attack_kwargs())
    surrogate = build_surrogate(cfg.surrogate, cfg.width)
    train_image_model(surrogate, to_uint8(queries), to_uint8(answers), image_train_config(cfg.surrogate_epochs), loss=cfg.loss,
                      generator=generator, device=ctx.device, augmentation=augmentation, progress=ctx.progress,
                      description=f"thief: {cfg.surrogate} surrogate, attack {attack}")
    if attack == "finetune":
        removal = create("attack", "finetune", epochs=cfg.finetune_epochs, loss=cfg.loss, **cfg.attack_kwargs())
    elif attack == "prune":
        removal = create("attack", "prune", amount=cfg.prune_amount, **cfg.attack_kwargs())
    else:
        return surrogate
    # the thief's own clean pairs: its queries with their ground truth, a fifth of them
    inputs, targets = (part[: max(1, len(part) // 5)] for part in clean_pair)
    return removal(surrogate, to_uint8(inputs), to_uint8(targets), generator=generator, device=ctx.device,
                   progress=ctx.progress)


@dataclass
class Verification:
    """R's readings of the suspect's and the clean references' images, and the owner's decision rule."""

    suspect: Reading  # the suspect's answers to the verification queries
    clean_model: Reading  # an independently trained clean model's answers to the same queries
    natural: Reading  # natural images (the queries' ground truth)
    threshold: float
    min_amplitude: float

    @property
    def references(self) -> Reading:
        return Reading.cat([self.clean_model, self.natural])

    def rate(self, reading: Reading, *, nc_only: bool = False) -> float:
        """Fraction of ``reading`` the owner's rule (or, ``nc_only``, the papers' NC rule) calls marked."""
        return reading.detected(self.threshold, 0.0 if nc_only else self.min_amplitude).double().mean().item()


def tpr_at_fpr(check: Verification, fpr: float) -> float:
    """Fraction of suspect NCs above the threshold that only a fraction ``fpr`` of the clean references
    exceed: the detection rate of a verifier calibrated on unmarked images rather than at a fixed NC."""
    threshold = torch.quantile(check.references.nc, 1 - fpr).item()
    return (check.suspect.nc > threshold).double().mean().item()


def _verify(protection: Protection, suspect: torch.Tensor, owner_outputs: torch.Tensor, clean_outputs: torch.Tensor,
            natural: torch.Tensor, cfg: WatermarkConfig, device: torch.device) -> Verification:
    """R on the suspect's and the clean model's answers to the test queries (expected: the mark of the
    owner's clean answer) and on natural images (expected: their own mark)."""
    return Verification(protection.read(suspect, owner_outputs, device),
                        protection.read(clean_outputs, owner_outputs, device), protection.read(natural, natural, device),
                        cfg.threshold, cfg.min_amplitude)


@register("scenario", "watermark")
class Watermark(Scenario):
    """Model watermarks of an image-processing API against surrogate theft with augmentation attacks."""

    name = "watermark"
    version = 1
    Config = WatermarkConfig
    presets = {
        "smoke": {"n_owner": 48, "n_attacker": 48, "n_test": 16, "width": 4, "extractor_width": 4, "task_epochs": 1,
                  "hiding_steps": 6, "tune_steps": 2, "surrogate_epochs": 1, "finetune_epochs": 1,
                  "min_edges": 0.0},  # a one-epoch model answers flat images: any query will do
        # the official split (6,000 / 6,000 / 100 at 256×256), widths, 200-epoch stage 1 and 300-epoch surrogates
        "paper": {"patch_size": 256, "n_owner": 6000, "n_attacker": 6000, "n_test": 100, "width": 64,
                  "extractor_width": 128, "task_epochs": 200, "hiding_steps": 75_000, "fidelity_start": 1.0,
                  "fidelity_end": 1.0, "tune_steps": 20_000, "tune_lr": 1e-4, "surrogate_epochs": 300, "finetune_epochs": 20,
                  "hiding_lr": 2e-4, "structure_target": "binary", "residual": "free",
                  "extractor_output": "relu"},
    }
    headline = ("wm_success", "wm_nc", "fp_clean_model", "fp_natural", "psnr_wm", "surrogate_psnr")

    def grid(self, cfg: dict[str, Any]) -> list[dict[str, Any]]:
        config = WatermarkConfig.from_dict(cfg)
        return [{**cfg, "method": m, "attack": a} for m in config.methods() for a in config.attacks()]

    def identity(self, cfg: dict[str, Any], preset: str) -> dict[str, Any]:
        return {"dataset": f"{cfg['dataset']}/{cfg['task']}", "model": cfg["surrogate"], "method": cfg["method"],
                "attack": cfg["attack"], "defense": None}

    def run(self, cfg: dict[str, Any], ctx: RunContext) -> Outcome:
        config = WatermarkConfig.from_dict(cfg)
        data = task_data(config)
        owner_out, thief_out, (test_in, test_gt, test_out, clean_out) = model_answers(config, data, ctx)
        thief_in, thief_gt = data.attacker

        method = config.method
        if method == "none":
            protections = {m: _protection(config, m, data.owner, owner_out, ctx) for m in ("baseline", "structure")}
            answers, test_answers = thief_out, test_out
        else:
            protection = _protection(config, method, data.owner, owner_out, ctx)
            protections = {method: protection}
            answers = protection.mark_outputs(thief_out, ctx.device)
            test_answers = protection.mark_outputs(test_out, ctx.device)

        surrogate = _steal(config, thief_in, answers, (thief_in, thief_gt), config.attack, ctx)
        suspect = apply(surrogate, test_in, ctx.device)
        checks = {m: _verify(p, suspect, test_out, clean_out, test_gt, config, ctx.device)
                  for m, p in protections.items()}
        metrics = {
            "surrogate_psnr": psnr(suspect, test_gt).mean().item(),
            "owner_psnr": psnr(test_out, test_gt).mean().item(),
        }
        if method == "none":  # the control: a surrogate of an unmarked model must not verify under any extractor
            for m, check in checks.items():
                metrics[f"fp_surrogate_{m}"] = check.rate(check.suspect)
            worst = max(checks, key=lambda m: metrics[f"fp_surrogate_{m}"])
            check = checks[worst]
        else:
            check = checks[method]
            api = protections[method].read(test_answers, test_out, ctx.device)
            metrics |= {"psnr_wm": psnr(test_answers, test_out).mean().item(),
                        "ssim_wm": ssim(test_answers, test_out).mean().item(),
                        "api_success": check.rate(api), "api_nc": api.nc.mean().item()}
        metrics |= {"wm_success": check.rate(check.suspect), "wm_nc": check.suspect.nc.mean().item(),
                    "wm_amplitude": check.suspect.amplitude.mean().item(),
                    "wm_auroc": auroc(check.suspect.nc, check.references.nc), "wm_tpr_at_fpr05": tpr_at_fpr(check, 0.05),
                    "fp_clean_model": check.rate(check.clean_model), "fp_natural": check.rate(check.natural),
                    # the papers' rule (NC alone) beside the owner's, whichever --min-amplitude is
                    "wm_success_nc": check.rate(check.suspect, nc_only=True),
                    "fp_clean_model_nc": check.rate(check.clean_model, nc_only=True),
                    "fp_natural_nc": check.rate(check.natural, nc_only=True)}

        shown = next(iter(protections.values()))
        rows = 4
        extracted = shown.extract(suspect[:rows], ctx.device).clamp(0, 1)
        residual = ((test_answers[:rows] - test_out[:rows]) * 10 + 0.5).clamp(0, 1)
        image_rows({"input": test_in[:rows], "clean output": test_out[:rows], "API output": test_answers[:rows],
                    "residual ×10": residual, "surrogate output": suspect[:rows],
                    f"R ({shown.method.name})": extracted},
                   ctx.artifacts / "examples.png", title=f"{method} vs {config.attack} ({config.surrogate} thief)")
        ctx.write_json("nc.json", {name: {"nc": reading.nc.tolist(), "amplitude": reading.amplitude.tolist()}
                                   for name, reading in (("suspect", check.suspect), ("clean_model", check.clean_model),
                                                         ("natural", check.natural))})
        better = {k: not k.startswith("fp_") for k in metrics}
        derived = {"owner_cached": all(p.cached for p in protections.values()),
                   "owner_train_s": {m: p.history.get("total_s") for m, p in protections.items()},
                   "dataset_sha256": data.fingerprint}
        if "structure" in protections:  # the key the structure mark was trained with (--key auto picks it)
            derived["structure_key"] = hex_colour(protections["structure"].method.mark.colour.tolist())
        return Outcome(metrics, better, n=len(test_in), dataset_fingerprint=data.fingerprint, derived=derived)
