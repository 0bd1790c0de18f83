"""``noisy-labels``: point-cloud segmentation trained on corrupted annotations (PNAL, arXiv 2107.14230).

One run: a dataset of room blocks, label noise of one kind and rate on the training split
(:mod:`attacks.label_noise`, exact realised rate), one learner (:mod:`defenses.noisy_labels`: CE, GCE,
SCE or PNAL) training a segmenter with :func:`secbench.engine.fit`, and mIoU / OA on the clean test
split. Beside it, the clean-label upper bound (the same network and recipe on the clean labels; cached
per seed) and, for PNAL, how well it corrected: precision and recall of its label changes against the
clean labels. ``--method all --rate 0.2,0.4,0.6`` expands to one run per (method, rate).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from attacks.label_noise import NOISE_KINDS, realised_rate
from defenses.noisy_labels.clusters import check_clustering, cluster_purity
from defenses.noisy_labels.losses import IGNORE, Learner
from defenses.noisy_labels.pnal import PNAL
from secbench import checkpoint
from secbench.config import option
from secbench.data import check_spec
from secbench.data.points import PointSet, PointSplits, jitter_blocks
from secbench.engine import TrainConfig, fit, predict
from secbench.errors import SecbenchError
from secbench.metrics import segmentation_scores
from secbench.plots import point_panels
from secbench.registry import create, get, register
from secbench.scenarios.base import Outcome, RunContext, Scenario

METHODS = ("ce", "gce", "sce", "pnal")
_PNAL_OPTIONS = ("queue", "tau", "warmup_epochs", "vote", "vote_threshold", "clustering", "cluster_eps")


@dataclass(frozen=True)
class NoisyLabelsConfig:
    """Defaults are the ``quick`` preset (a few minutes per method on 2 CPU cores)."""

    dataset: str = option("scenes", "point-cloud dataset: scenes (embedded, procedural), s3dis, scannet (local)")
    model: str = option("dgcnn", "segmenter: dgcnn | pointnet")
    noise: str = option("symmetric", "label noise: symmetric | asymmetric | point (whole instances, or points)")
    rate: str = option("0.6", "noise rate(s) in [0, 1), comma-separated for one run each")
    method: str = option("pnal", "learner(s): pnal | ce | gce | sce, comma-separated, or all")
    n_train: int | None = option(320, "training blocks (None: every block of the dataset)", low=1)
    n_test: int | None = option(None, "test blocks (None: every block of the test rooms)", low=1)
    block_points: int = option(512, "points per block (paper 4096)")
    k: int = option(16, "DGCNN's neighbours per point (paper 30)")
    embed: int = option(256, "DGCNN's per-point embedding width (paper 1024)")
    epochs: int = option(10, "training epochs (paper 30)")
    batch_size: int = option(8, "blocks per batch (paper 12)")
    lr: float = option(1e-3, "Adam's learning rate, times 0.9 every 5 epochs (PNAL's StepLR)", positive=True)
    point_augment: bool = option(False, "the official code's training augmentation: 1 cm point jitter, ±15° block "
                                        "rotations (off at quick: not measured there)")
    ema: float = option(0.95, "decay of the weights' moving average used for testing (paper 0.999 over ~50x the steps)", high=1)
    warmup_epochs: int = option(4, "PNAL: epochs of plain training on the noisy labels first")
    queue: int = option(4, "PNAL: predictions kept per point (Q)", low=1)
    tau: float = option(0.05, "PNAL: reliability threshold on the history's uncertainty", positive=True)
    vote: bool = option(True, "PNAL: cluster-wise voting (the official release ships it off)")
    vote_threshold: int = option(5, "PNAL: a class with at least max_count // T_v votes can win a cluster", low=1)
    clustering: str = option("dbscan", "PNAL's clusters: dbscan | gmm (per block, on xyz + rgb)")
    cluster_eps: float = option(0.08, "PNAL: DBSCAN's radius in metres", positive=True)

    def __post_init__(self) -> None:
        check_spec(self.dataset, "pointcloud", folder=None)
        get("segmenter", self.model)
        check_clustering(self.clustering)
        if self.noise not in NOISE_KINDS:
            raise SecbenchError(f"unknown noise kind {self.noise!r}; valid: {', '.join(NOISE_KINDS)}")
        self.rates()
        self.methods()
        if min(self.block_points, self.k, self.embed, self.epochs, self.batch_size) < 1:
            raise SecbenchError("--block-points, --k, --embed, --epochs and --batch-size must be positive")

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> NoisyLabelsConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in cfg.items() if k in names})

    def rates(self) -> list[float]:
        try:
            rates = [float(r) for r in str(self.rate).split(",") if r.strip()]
        except ValueError:
            raise SecbenchError(f"--rate takes numbers in [0, 1) like 0.4 or 0.2,0.4,0.6, got {self.rate!r}") from None
        if not rates or not all(0 <= r < 1 for r in rates):
            raise SecbenchError(f"a noise rate lies in [0, 1), got {self.rate!r}")
        return rates

    def methods(self) -> list[str]:
        names = list(METHODS) if self.method == "all" else [m.strip() for m in self.method.split(",") if m.strip()]
        unknown = [m for m in names if m not in METHODS]
        if unknown or not names:
            raise SecbenchError(f"unknown method {', '.join(unknown) or repr(self.method)}; valid: "
                                f"{', '.join(METHODS)}, all")
        return names

    def recipe(self) -> TrainConfig:
        """PNAL's recipe (Adam, StepLR 5 epochs × 0.9, as its config states), at this config's scale."""
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, optimizer="adam",
                           weight_decay=0.0, schedule="step", step_every=5, step_gamma=0.9, augment=(),
                           ema=self.ema)

    def segmenter(self, num_classes: int) -> nn.Module:
        options = {"k": self.k, "embed": self.embed} if self.model == "dgcnn" else {}
        return create("segmenter", self.model, num_classes=num_classes, **options)

    def learner(self, method: str, seed: int) -> Learner:
        options = {name: getattr(self, name) for name in _PNAL_OPTIONS} if method == "pnal" else {}
        return create("defense", method, **options, **({"seed": seed} if method == "pnal" else {}))


def load_points(cfg: NoisyLabelsConfig, seed: int) -> PointSplits:
    return create("pointcloud", cfg.dataset, seed=seed, n_train=cfg.n_train, n_test=cfg.n_test,
                  block_points=cfg.block_points)


def _train(cfg: NoisyLabelsConfig, data: PointSplits, train: PointSet, learner: Learner, ctx: RunContext,
           description: str) -> tuple[nn.Module, dict[str, list[float]]]:
    generator = ctx.stream("segmenter")  # every learner starts from the same weights and batch order
    model = cfg.segmenter(data.num_classes)
    learner.prepare(train)
    augment = (lambda x, y: (jitter_blocks(x, generator), y)) if cfg.point_augment else None
    history = fit(model, train, cfg.recipe(), generator=generator, device=ctx.device, item_loss=learner,
                  batch_hook=augment, progress=ctx.progress, description=description)
    return model, history


def _upper_bound(cfg: NoisyLabelsConfig, data: PointSplits, ctx: RunContext) -> tuple[nn.Module, dict]:
    """The clean-label upper bound: CE on the clean labels, same network and recipe (cached per seed)."""
    payload = {"data": [cfg.dataset, cfg.n_train, cfg.n_test, cfg.block_points, data.fingerprint()],
               "model": [cfg.model, cfg.k, cfg.embed], "recipe": repr(cfg.recipe()), "augment": cfg.point_augment}
    entry = ctx.cache_entry("noisy-labels-upper-bound", payload)
    model = cfg.segmenter(data.num_classes)
    if (history := checkpoint.load_modules(entry, {"model": model}, ctx.device)) is not None:
        return model, history
    model, history = _train(cfg, data, data.train, create("defense", "ce"), ctx, "train upper bound (clean labels)")
    checkpoint.save_modules(entry, {"model": model}, history)
    return model, history


def _scores(model: nn.Module, data: PointSplits, ctx: RunContext, prefix: str = "") -> dict[str, float]:
    predicted = predict(model, data.test.points, device=ctx.device, batch_size=16).argmax(1)
    scores = segmentation_scores(predicted, data.test.labels.cpu(), data.num_classes)
    metrics = {f"{prefix}miou": scores["miou"].item(), f"{prefix}oa": scores["oa"].item()}
    if not prefix:
        metrics |= {f"iou_{name}": v for name, v in zip(data.classes, scores["iou"].tolist(), strict=True) if v == v}
    return metrics


def _correction_metrics(learner: PNAL, clean: torch.Tensor, noisy: torch.Tensor) -> dict[str, float]:
    """How PNAL's final training labels compare with the clean ones (fractions of training points)."""
    final = learner.labels.cpu()
    kept = learner.corrected.cpu()
    changed = kept & (final != noisy)
    wrong = noisy != clean
    return {
        "kept_fraction": kept.float().mean().item(),
        "kept_label_acc": (final[kept] == clean[kept]).float().mean().item() if kept.any() else 0.0,
        "correction_precision": (final[changed] == clean[changed]).float().mean().item() if changed.any() else 0.0,
        "correction_recall": (kept & wrong & (final == clean)).sum().item() / max(1, int(wrong.sum())),
        "cluster_purity": cluster_purity(learner.clusters.cpu(), clean),
    }


def _draw_room(model: nn.Module, data: PointSplits, train: PointSet, learner: Learner, ctx: RunContext,
               title: str) -> None:
    """A training room coloured by its clean, noisy and (PNAL) corrected labels, and the trained model's
    prediction; the ceiling is left out of the picture, as it hides the room."""
    blocks = torch.nonzero(data.train.rooms.cpu() == int(data.train.rooms[0])).squeeze(1)
    points = data.train.points[blocks].cpu().double()
    # room coordinates in metres: within a block, block-centred metres = extent × room-normalised + offset
    local, normalised = points[:, :3], points[:, 6:9]
    local, normalised = local - local.mean(-1, keepdim=True), normalised - normalised.mean(-1, keepdim=True)
    extent = (local * normalised).sum((0, 2)) / (normalised * normalised).sum((0, 2)).clamp_min(1e-12)
    xyz = (points[:, 6:9] * extent[None, :, None]).permute(0, 2, 1).reshape(-1, 3).numpy()
    shown = (data.train.labels[blocks].reshape(-1) != data.classes.index("ceiling") if "ceiling" in data.classes
             else torch.ones(len(xyz), dtype=torch.bool)).cpu().numpy()
    panels = {"clean labels": data.train.labels[blocks], "noisy labels (trained on)": train.labels[blocks]}
    if isinstance(learner, PNAL):
        corrected = torch.where(learner.corrected.cpu(), learner.labels.cpu(), IGNORE)
        panels["PNAL's labels (grey: left out)"] = corrected[blocks]
    panels["prediction"] = predict(model, data.train.points[blocks], device=ctx.device, batch_size=16).argmax(1)
    point_panels(xyz[shown], {k: v.reshape(-1).cpu().numpy()[shown] for k, v in panels.items()}, data.classes,
                 ctx.artifacts / "room.png", title=title)


@register("scenario", "noisy-labels")
class NoisyLabels(Scenario):
    """Point-cloud segmentation from noisy labels: CE / GCE / SCE / PNAL, mIoU against the clean upper bound."""

    name = "noisy-labels"
    version = 1
    Config = NoisyLabelsConfig
    presets = {
        "smoke": {"n_train": 8, "n_test": 4, "block_points": 128, "k": 8, "embed": 32, "epochs": 3, "batch_size": 4,
                  "warmup_epochs": 1, "queue": 1},
        "paper": {"n_train": None, "n_test": None, "block_points": 4096, "k": 30, "embed": 1024, "epochs": 30,
                  "batch_size": 12, "ema": 0.999, "tau": 0.001, "point_augment": True},
    }
    headline = ("miou", "upper_bound_miou", "oa", "realised_noise_rate", "correction_precision", "train_s")

    def grid(self, cfg: dict[str, Any]) -> list[dict[str, Any]]:
        config = NoisyLabelsConfig.from_dict(cfg)
        return [{**cfg, "method": m, "rate": f"{r:g}"} for m in config.methods() for r in config.rates()]

    def identity(self, cfg: dict[str, Any], preset: str) -> dict[str, Any]:
        return {"dataset": cfg["dataset"], "model": cfg["model"], "method": cfg["method"],
                "attack": f"{cfg['noise']}-{cfg['rate']}", "defense": None}

    def run(self, cfg: dict[str, Any], ctx: RunContext) -> Outcome:
        config = NoisyLabelsConfig.from_dict(cfg)
        (rate,), (method,) = config.rates(), config.methods()
        get("segmenter", config.model)  # an unknown name fails before any data is built
        data = load_points(config, ctx.seed)
        noise = create("attack", f"noise-{config.noise}", rate=rate, seed=ctx.seed)
        positions = data.train.points[:, 6:9].permute(0, 2, 1)  # room coordinates: one frame per instance
        noisy = noise(data.train.labels, data.train.instances, positions, data.classes)
        train = data.train.with_labels(noisy)
        upper, _ = _upper_bound(config, data, ctx)
        learner = config.learner(method, ctx.seed)
        model, history = _train(config, data, train, learner, ctx, f"train {method} ({config.noise} {rate:g})")
        ctx.write_json("history.json", history)
        metrics = {**_scores(model, data, ctx), **_scores(upper, data, ctx, prefix="upper_bound_"),
                   "realised_noise_rate": realised_rate(data.train.labels, noisy), "train_s": sum(history["epoch_s"])}
        if isinstance(learner, PNAL):
            metrics |= _correction_metrics(learner, data.train.labels.cpu(), noisy.cpu())
        _draw_room(model, data, train, learner, ctx, f"{data.name}: {config.noise} noise {rate:g}, {method}")
        better = {m: m not in ("train_s", "realised_noise_rate") for m in metrics}
        derived = {"n_train_blocks": len(data.train), "n_test_blocks": len(data.test), "classes": list(data.classes),
                   "source": data.source}
        return Outcome(metrics, better, n=int(data.test.labels.numel()), dataset_fingerprint=data.fingerprint(),
                       derived=derived)
