"""``transfer``: few-label transfer from a source to a target dataset (Li et al. 2021, arXiv 2107.12369).

One run is one pretraining of the encoder on the source (``none``, ``supervised``, ``ssl`` = SimCLR,
``ssl-target`` = SimCLR with the unlabelled target images mixed in at a fixed share) and one seed. It
then measures, on the target:

- few-label accuracy with exactly k labels per class (nested draws per seed) under three protocols:
  ``linear_k{k}`` (logistic regression on frozen features), ``knn_k{k}`` (weighted kNN) and
  ``finetune_k{k}`` (whole network);
- clustering quality of the frozen features of the target training images: k-means with one centre
  per class, scored by ``cluster_nmi``, ``cluster_ari`` and ``cluster_acc`` (Hungarian-matched);
- progressive few-label transfer: ``select_{strategy}_r{round}``, the accuracy after each round of a
  labelling budget spent by random, one-shot k-means or anchor-constrained k-means selection.

Geometry: both datasets are brought to ``--img-size``. A dataset that renders at any size (digits,
shapes, patches, gtsrb, imagefolder) is built at that size; one with a fixed size (cifar10/100, svhn)
is resized (bilinear, antialiased). Every dataset delivers 3 channels (grey ones are replicated).

The pretrained encoder is cached in the results folder per (pretraining, the fields it depends on,
seed, device), so re-running with other evaluation options does not train it again.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from secbench import checkpoint
from secbench.config import config_hash, option
from secbench.data import DataSplits, ImageSet, check_spec, load_dataset, make_splits
from secbench.engine import TrainConfig, accuracy
from secbench.errors import SecbenchError, UnknownNameError
from secbench.fewlabel.clustering import clustering_scores, kmeans
from secbench.fewlabel.evaluate import embed, finetune, k_shot, linear_probe, stream, weighted_knn
from secbench.fewlabel.pretrain import PRETRAININGS, PretrainRecipe, pretrain
from secbench.fewlabel.progressive import progressive_transfer
from secbench.fewlabel.selection import STRATEGIES
from secbench.plots import line_plot, scatter_plot
from secbench.registry import create_model, get, register
from secbench.scenarios.base import Outcome, RunContext, Scenario
from secbench.scenarios.victim import DATASET_HELP

PROTOCOLS = ("linear", "knn", "finetune")
# The config fields each pretraining's encoder depends on (besides the seed and device): its cache key.
_DATA_FIELDS = ("source", "model", "img_size", "data_seed", "n_source")
_SSL_FIELDS = ("ssl_images", "ssl_batch", "ssl_lr", "temperature")
PRETRAIN_FIELDS = {
    "none": _DATA_FIELDS,
    "supervised": (*_DATA_FIELDS, "sup_images", "sup_batch", "sup_lr"),
    "ssl": (*_DATA_FIELDS, *_SSL_FIELDS),
    "ssl-target": (*_DATA_FIELDS, *_SSL_FIELDS, "target", "n_target", "target_share"),
}


def _names(value: str, valid: tuple[str, ...], what: str) -> list[str]:
    names = list(valid) if value == "all" else [v.strip() for v in value.split(",") if v.strip()]
    for name in names:
        if name not in valid:
            raise UnknownNameError(what, name, (*valid, "all"))
    if not names:
        raise SecbenchError(f"--{what.replace(' ', '-')} is empty")
    return names


@dataclass(frozen=True)
class TransferConfig:
    """Defaults are the ``quick`` preset: all four pretrainings of cnn-s on shapes, evaluated on digits."""

    source: str = option("shapes", f"pretraining dataset: {DATASET_HELP}")
    target: str = option("digits", f"few-label dataset: {DATASET_HELP}")
    model: str = option("cnn-s", "encoder: a registered model (secbench list models)")
    pretrain: str = option("none,supervised,ssl,ssl-target", "none | supervised | ssl | ssl-target, a comma list, "
                           "or all (one run each)")
    labels_per_class: str = option("1,2,4,10", "few-label budgets k: exactly k labels of every target class")
    img_size: int = option(32, "side both datasets are brought to (built at it, or resized)", low=16, high=1024)
    data_seed: int = option(0, "seed of the dataset draws; it stays fixed while run seeds vary")
    n_source: int | None = option(None, "source training images (default: the dataset's own size)", low=1)
    n_target: int | None = option(None, "target training images: the unlabelled pool labels are drawn from", low=1)
    n_test: int | None = option(None, "target test images (default: the dataset's own size)", low=1)
    sup_images: int = option(40_000, "supervised pretraining budget in images seen")
    sup_batch: int = option(128, "supervised pretraining batch size")
    sup_lr: float = option(0.05, "supervised pretraining peak learning rate (SGD, triangle)")
    ssl_images: int = option(60_000, "SimCLR budget in images seen (each as two views)")
    ssl_batch: int = option(256, "SimCLR batch size (2 x batch views, 2 x batch - 2 negatives each)")
    ssl_lr: float = option(0.3, "SimCLR peak learning rate (SGD, cosine)")
    temperature: float = option(0.2, "SimCLR temperature (MoCo v2's 0.2; SimCLR used 0.1 on ImageNet, 0.5 on CIFAR)")
    target_share: float = option(0.5, "ssl-target: share of target images in every SimCLR batch")
    finetune_steps: int = option(100, "fine-tuning steps per labelled set")
    finetune_batch: int = option(32, "fine-tuning batch size")
    finetune_lr: float = option(0.05, "fine-tuning peak learning rate (SGD, cosine)")
    knn_k: int = option(20, "neighbours of the weighted kNN")
    knn_temperature: float = option(0.07, "temperature of the weighted kNN's exp(similarity / T) votes")
    rounds: int = option(3, "progressive selection: labelling rounds")
    round_labels: int = option(10, "progressive selection: labels bought per round")
    selection: str = option("random,kmeans,anchored", "progressive selection strategies, a comma list or all")
    tsne_points: int = option(1000, "target images in the t-SNE figure (a random subset)")

    def __post_init__(self) -> None:
        check_spec(self.source)
        check_spec(self.target)
        get("model", self.model)
        self.pretrainings()
        self.strategies()
        self.ks()
        if self.img_size < 8:
            raise SecbenchError(f"--img-size must be at least 8, got {self.img_size}")
        positive = ("sup_images", "sup_batch", "ssl_images", "ssl_batch", "finetune_steps", "finetune_batch", "knn_k",
                    "rounds", "round_labels", "tsne_points")
        for name in positive:
            if getattr(self, name) < 1:
                raise SecbenchError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in ("sup_lr", "ssl_lr", "finetune_lr", "temperature", "knn_temperature"):
            if getattr(self, name) <= 0:
                raise SecbenchError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.ssl_batch < 2:
            raise SecbenchError("--ssl-batch must be at least 2: SimCLR's negatives are the rest of the batch")
        if not 0 <= self.target_share <= 1:
            raise SecbenchError(f"--target-share is a fraction in [0, 1], got {self.target_share}")

    def pretrainings(self) -> list[str]:
        return _names(self.pretrain, PRETRAININGS, "pretrain")

    def strategies(self) -> list[str]:
        return _names(self.selection, STRATEGIES, "selection")

    def ks(self) -> list[int]:
        try:
            ks = sorted({int(k) for k in self.labels_per_class.split(",") if k.strip()})
        except ValueError:
            ks = []
        if not ks or ks[0] < 1:
            raise SecbenchError(f"--labels-per-class takes positive integers like 1,2,4,10, got {self.labels_per_class!r}")
        return ks

    def recipe(self) -> PretrainRecipe:
        return PretrainRecipe(self.sup_images, self.sup_batch, self.sup_lr, self.ssl_images, self.ssl_batch,
                              self.ssl_lr, self.temperature, self.target_share)

    def finetune_config(self) -> TrainConfig:
        # crop only: a mirrored digit or character is another symbol, and the target is unknown in general
        return TrainConfig(epochs=1, batch_size=self.finetune_batch, lr=self.finetune_lr, schedule="cosine",
                           augment=("crop",), precise_bn=10)

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> TransferConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in cfg.items() if k in names})


def at_size(data: DataSplits, img_size: int) -> DataSplits:
    """``data`` resized (bilinear, antialiased) to ``img_size`` when it is not already that size."""
    if data.img_size == img_size:
        return data

    def resize(part: ImageSet) -> ImageSet:
        x = F.interpolate(part.images.float(), size=(img_size, img_size), mode="bilinear", antialias=True,
                          align_corners=False)
        return ImageSet(x.round_().clamp_(0, 255).to(torch.uint8), part.labels)

    return make_splits(data.name, resize(data.train), resize(data.test), data.classes, data.source)


def load_at_size(spec: str, img_size: int, **kwargs: Any) -> DataSplits:
    """Dataset ``spec`` at ``img_size``: built at that size when its factory takes ``img_size``, else resized."""
    factory = get("dataset", spec.partition(":")[0]).load()
    if "img_size" in inspect.signature(factory).parameters:
        kwargs["img_size"] = img_size
    return at_size(load_dataset(spec, **kwargs), img_size)


def _pretrained(config: TransferConfig, source: DataSplits, target: DataSplits,
                ctx: RunContext) -> tuple[nn.Module, dict[str, Any]]:
    """The encoder after ``config.pretrain``, from the cache when an earlier run trained it."""
    method = config.pretrain
    key = config_hash({"pretrain": method, **{f: getattr(config, f) for f in PRETRAIN_FIELDS[method]},
                       "seed": ctx.seed, "device": ctx.device.type})
    entry = ctx.cache / f"encoder-{method}-{config.model}-{key.split(':')[1][:16]}"
    if cached := checkpoint.load_entry(entry, ctx.device):
        return cached[0], {**cached[1], "cached": True}
    build = {"num_classes": source.num_classes, "img_size": config.img_size, "mean": source.mean, "std": source.std}
    encoder = create_model(config.model, **build)
    start = time.perf_counter()
    history = pretrain(method, encoder, source, target.train, config.recipe(), generator=ctx.generator,
                       device=ctx.device, progress=ctx.progress)
    history = {**history, "pretrain_s": time.perf_counter() - start}
    checkpoint.save_entry(entry, encoder.eval(), history, name=config.model, **build)
    return encoder, {**history, "cached": False}


@register("scenario", "transfer")
class Transfer(Scenario):
    """Few-label transfer: pretraining on a source, k-shot probes, clustering, progressive selection."""

    name = "transfer"
    version = 1
    Config = TransferConfig
    presets = {
        "smoke": {"n_source": 300, "n_target": 200, "n_test": 100, "labels_per_class": "1,2", "sup_images": 300,
                  "ssl_images": 300, "ssl_batch": 64, "finetune_steps": 3, "finetune_batch": 16, "rounds": 2,
                  "round_labels": 5, "tsne_points": 60},
        # SimCLR's CIFAR-10 setting (appendix B.9: temperature 0.5, batch 512, lr 0.3 x batch / 256, 1,000
        # epochs, here of the source) with a ResNet-18; supervised for 100 epochs, on a GPU
        "paper": {"model": "resnet18", "sup_images": 1_000_000, "ssl_images": 10_000_000, "ssl_batch": 512,
                  "ssl_lr": 0.6, "temperature": 0.5, "finetune_steps": 500},
    }
    headline = ("linear_k1", "knn_k1", "finetune_k1", "linear_k10", "cluster_nmi", "cluster_acc")

    def grid(self, cfg: dict[str, Any]) -> list[dict[str, Any]]:
        return [{**cfg, "pretrain": p} for p in TransferConfig.from_dict(cfg).pretrainings()]

    def identity(self, cfg: dict[str, Any], preset: str) -> dict[str, Any]:
        return {"dataset": f"{cfg['source']}->{cfg['target']}", "model": cfg["model"], "method": cfg["pretrain"],
                "attack": None, "defense": None}

    def run(self, cfg: dict[str, Any], ctx: RunContext) -> Outcome:
        config = TransferConfig.from_dict(cfg)
        source = load_at_size(config.source, config.img_size, seed=config.data_seed, n_train=config.n_source)
        target = load_at_size(config.target, config.img_size, seed=config.data_seed, n_train=config.n_target,
                              n_test=config.n_test)
        encoder, history = _pretrained(config, source, target, ctx)
        pool, test = target.train, target.test
        pool_features = embed(encoder, pool.images, device=ctx.device)

        metrics = self._few_label(config, encoder, pool, pool_features, test, target.num_classes, ctx)
        clusters = kmeans(pool_features, target.num_classes, generator=stream(ctx.seed, 4), n_init=10).assign
        metrics.update(clustering_scores(pool.labels.numpy(), clusters.numpy()))
        progressive = progressive_transfer(
            encoder, pool, test, target.num_classes, strategies=config.strategies(), rounds=config.rounds,
            per_round=config.round_labels, finetune_cfg=config.finetune_config(), steps=config.finetune_steps,
            seed=ctx.seed, device=ctx.device, progress=ctx.progress)
        for strategy, accs in progressive.accuracy.items():
            metrics.update({f"select_{strategy}_r{r}": acc for r, acc in enumerate(accs, 1)})

        self._figures(config, metrics, progressive.accuracy, pool, pool_features, target.classes, ctx)
        ctx.write_json("selection.json", {"accuracy": progressive.accuracy, "classes_covered": progressive.classes,
                                          "picks": progressive.picks})
        derived = {"encoder_cached": history["cached"], "pretrain_s": round(history["pretrain_s"], 1),
                   "pretrain_epochs": len(history.get("loss", [])),
                   "pretrain_loss": history["loss"][-1] if history.get("loss") else None,
                   "classes_covered": progressive.classes, "n_pool": len(pool), "n_test": len(test)}
        return Outcome(metrics, dict.fromkeys(metrics, True), n=len(test), dataset_fingerprint=target.fingerprint(),
                       derived=derived)

    def _few_label(self, config: TransferConfig, encoder: nn.Module, pool: ImageSet, pool_features: torch.Tensor,
                   test: ImageSet, num_classes: int, ctx: RunContext) -> dict[str, float]:
        """``{protocol}_k{k}`` accuracies on the target test set for every k and protocol."""
        test_features = embed(encoder, test.images, device=ctx.device)
        shots = k_shot(pool.labels, config.ks(), seed=ctx.seed)
        metrics = {}
        with ctx.progress.task("few-label evaluation", total=len(shots)) as bar:
            for k, index in shots.items():
                train, labels = pool_features[index], pool.labels[index]
                metrics[f"linear_k{k}"] = linear_probe(train, labels, test_features, test.labels)
                metrics[f"knn_k{k}"] = weighted_knn(train, labels, test_features, test.labels, k=config.knn_k,
                                                    temperature=config.knn_temperature)
                model = finetune(encoder, pool.subset(index), num_classes, config.finetune_config(),
                                 steps=config.finetune_steps, generator=stream(ctx.seed, 5, k), device=ctx.device)
                metrics[f"finetune_k{k}"] = accuracy(model, test, device=ctx.device)
                bar.advance(1, k=k)
        # one protocol after the other, so that report tables list k in order within each protocol
        return {f"{p}_k{k}": metrics[f"{p}_k{k}"] for p in PROTOCOLS for k in shots}

    def _figures(self, config: TransferConfig, metrics: dict[str, float], selection: dict[str, list[float]],
                 pool: ImageSet, pool_features: torch.Tensor, classes: tuple[str, ...], ctx: RunContext) -> None:
        from sklearn.manifold import TSNE  # deferred: only the figure needs it

        ks = config.ks()
        what = f"{config.pretrain} {config.model}, {config.source} → {config.target}"
        line_plot(ks, {p: [metrics[f"{p}_k{k}"] for k in ks] for p in PROTOCOLS},
                  ctx.artifacts / "accuracy_vs_labels.png", xlabel="labels per class", ylabel="target test accuracy",
                  title=what)
        budgets = [r * config.round_labels for r in range(1, config.rounds + 1)]
        line_plot(budgets, selection, ctx.artifacts / "selection.png", xlabel="labels (all rounds so far)",
                  ylabel="target test accuracy", title=f"progressive selection: {what}")
        index = torch.randperm(len(pool), generator=stream(ctx.seed, 6))[: config.tsne_points]
        perplexity = min(30.0, (len(index) - 1) / 3)  # scikit-learn's default, unless the subset is tiny
        points = TSNE(perplexity=perplexity, init="pca", random_state=ctx.seed).fit_transform(
            pool_features[index].numpy())
        scatter_plot(points.tolist(), pool.labels[index].tolist(), classes, ctx.artifacts / "tsne.png",
                     title=f"t-SNE of target features: {what}")
