"""``detection``: an ATSS detector with GN towers or Dynamic Head (arXiv 2106.08322), COCO AP and its robustness.

One run: a detection dataset (the embedded ``objects`` set, or ``coco:PATH``), an ATSS detector
(:mod:`secbench.models.detector`: FPN P3–P7 on a zoo backbone, head ``towers`` or ``dyhead``) trained with
:func:`secbench.engine.fit` (random horizontal flips that move the boxes, through its ``batch_hook``), COCO AP /
AP50 / AP75 / AP_s / AP_m / AP_l on the test split with pycocotools, and, with ``--corruptions``, AP on a test
subset under every corruption of :data:`attacks.corruptions.DETECTION_CORRUPTIONS` at 5 severities, the boxes
transformed with the pixels (albumentations ``bbox_params``). ``--head dyhead,towers --backbone resnet18`` expands
to one run per (head, backbone); the two heads start from the same backbone and FPN weights and see the same
batches (one random stream per backbone), so they differ only by the head: a matched training budget in steps.

What differs from the papers' recipe (1x COCO: SGD lr 0.01, batch 16, 12 epochs, weight decay 1e-4, 500
warm-up iterations, lr × 0.1 at epochs 8 and 11, multi-scale-free 800-px images, ImageNet-pretrained
backbones): there are no pretrained weights offline, so every backbone starts from random init; the engine's
schedules have no warm-up-then-step, so the lr warms up linearly and then decays linearly (``triangle``);
the quick preset narrows the FPN/head to 64 channels and DyHead to 2 blocks (paper 256 and 6) so that a run fits
a few CPU minutes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Any

import torch

from attacks.corruptions import DETECTION_CORRUPTIONS, SEVERITIES, corrupt_with_boxes
from secbench.config import option
from secbench.data import check_spec
from secbench.data.detection import DetectionSet, DetectionSplits, flip_boxes, load_detection
from secbench.engine import TrainConfig, fit
from secbench.errors import SecbenchError, UnknownNameError
from secbench.metrics import coco_ap
from secbench.models.detector import ATSS, BACKBONES, HEADS, Detections, atss_loss
from secbench.models.flops import count_params
from secbench.plots import detection_panels
from secbench.registry import create, register
from secbench.scenarios.base import Outcome, RunContext, Scenario

_PANEL_IMAGES = 6


def _names(value: str, valid: tuple[str, ...] | dict[str, str], what: str) -> list[str]:
    names = list(valid) if value == "all" else [v.strip() for v in value.split(",") if v.strip()]
    for name in names or [value]:
        if name not in valid:
            raise UnknownNameError(what, name, valid)
    return names


@dataclass(frozen=True)
class DetectionConfig:
    """Defaults are the ``quick`` preset (minutes on 2 CPU cores for the towers head)."""

    dataset: str = option("objects", "detection dataset: objects (embedded, procedural) or coco:PATH (local folder)")
    head: str = option("towers", "detection head(s): dyhead | towers, comma-separated for one run each")
    backbone: str = option("resnet18", "zoo backbone(s): resnet18, micronet-m0..m3, mobile-former-26m..508m; "
                                       "comma-separated for one run each")
    dyhead_blocks: int = option(2, "DyHead blocks (paper 6)")
    channels: int = option(64, "FPN and head width, a multiple of 16 (paper 256)", low=16, high=1024)
    anchor_scale: float = option(8.0, "anchor side in strides, one square anchor per location (ATSS 8)")
    img_size: int = option(128, "image side in pixels (COCO folders are resized to it)", low=32, high=2048)
    n_train: int | None = option(2000, "training images (None: all)", low=1)
    n_test: int | None = option(300, "test images (None: all)", low=1)
    epochs: int = option(4, "training epochs (paper 12, the 1x schedule)")
    batch_size: int = option(16, "images per batch (paper 16)")
    lr: float = option(0.01, "SGD's peak learning rate (paper 0.01 at batch 16)", positive=True)
    trunk_lr: float = option(1.0, "learning rate of the backbone and FPN as a multiple of --lr (paper: 1, one rate)")
    weight_decay: float = option(1e-4, "SGD weight decay (paper 1e-4)")
    warmup: float = option(0.1, "fraction of the steps the lr warms up over (paper: 500 of ~90k iterations)")
    flip: bool = option(True, "random horizontal flips with their boxes during training")
    precise_bn: int = option(20, "batches that re-estimate the backbone's BatchNorm statistics after training")
    corruptions: bool = option(True, "AP under every corruption at 5 severities (boxes follow the pixels)")
    n_corrupt: int = option(100, "test images per corruption and severity")
    score_threshold: float = option(0.05, "detections below this class probability are dropped (ATSS 0.05)", high=1)

    def __post_init__(self) -> None:
        check_spec(self.dataset, "detection-dataset", "coco")
        self.heads()
        self.backbones()
        if min(self.dyhead_blocks, self.epochs, self.batch_size, self.n_corrupt, self.img_size) < 1:
            raise SecbenchError("--dyhead-blocks, --epochs, --batch-size, --n-corrupt and --img-size must be positive")
        if self.channels < 16 or self.channels % 16:
            raise SecbenchError(f"--channels must be a positive multiple of 16 (DyHead's GroupNorm), got {self.channels}")
        if self.trunk_lr <= 0:
            raise SecbenchError(f"--trunk-lr is a positive multiple of --lr, got {self.trunk_lr}")
        if self.anchor_scale <= 0:
            raise SecbenchError(f"--anchor-scale must be positive, got {self.anchor_scale}")
        if not 0 < self.warmup < 1:
            raise SecbenchError(f"--warmup is a fraction of the steps in (0, 1), got {self.warmup}")

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> DetectionConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in cfg.items() if k in names})

    def heads(self) -> list[str]:
        return _names(self.head, HEADS, "detection head")

    def backbones(self) -> list[str]:
        return _names(self.backbone, BACKBONES, "detector backbone")

    def recipe(self) -> TrainConfig:
        """SGD with momentum 0.9, linear warm-up then linear decay; no image-level augmentation (boxes would not
        follow it: the flip runs in the batch hook). ``trunk_lr`` scales the backbone's and FPN's rate."""
        trunk = (("backbone.", self.trunk_lr), ("fpn.", self.trunk_lr)) if self.trunk_lr != 1 else ()
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, optimizer="sgd",
                           momentum=0.9, weight_decay=self.weight_decay, schedule="triangle", warmup=self.warmup,
                           augment=(), precise_bn=self.precise_bn, lr_scale=trunk)

    def detector(self, num_classes: int) -> ATSS:
        (head,), (backbone,) = self.heads(), self.backbones()
        return create("detector", "atss", backbone=backbone, num_classes=num_classes, img_size=self.img_size,
                      head=head, dyhead_blocks=self.dyhead_blocks, channels=self.channels,
                      anchor_scale=self.anchor_scale)


def detect_all(model: ATSS, images: torch.Tensor, *, device: torch.device, batch_size: int = 32,
               score_threshold: float = 0.05) -> list[Detections]:
    """:meth:`ATSS.detect` over uint8 ``(N, 3, H, W)`` images, in batches."""
    model.eval()
    out: list[Detections] = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device).float().div_(255)
        out += model.detect(x, score_threshold=score_threshold)
    return out


def _ap(model: ATSS, data: DetectionSet, thresholds: tuple[float, float], config: DetectionConfig,
        device: torch.device) -> tuple[dict[str, float], list[Detections]]:
    detections = detect_all(model, data.images, device=device, score_threshold=config.score_threshold)
    truth = [data.objects(i) for i in range(len(data))]
    found = [(d.boxes.numpy(), d.scores.numpy(), d.classes.numpy()) for d in detections]
    return coco_ap(truth, found, area_thresholds=thresholds), detections


def _corruption_metrics(model: ATSS, data: DetectionSplits, config: DetectionConfig, ctx: RunContext
                        ) -> dict[str, float]:
    """``ap_<corruption>_s<k>`` for every corruption and severity, their per-corruption means
    ``ap_<corruption>_mean`` and the overall ``mean_corrupted_ap``, on the first ``n_corrupt`` test images."""
    subset = data.test.subset(torch.arange(min(config.n_corrupt, len(data.test))))
    metrics: dict[str, float] = {}
    with ctx.progress.task("corruptions", total=len(DETECTION_CORRUPTIONS)) as bar:
        for k, name in enumerate(DETECTION_CORRUPTIONS):
            key = name.replace("-", "_")
            for severity in SEVERITIES:
                images, labels = corrupt_with_boxes(subset.images, subset.labels, name, severity,
                                                    seed=ctx.seed + 1000 * k + severity)
                scores, _ = _ap(model, DetectionSet(images, labels), data.area_thresholds, config, ctx.device)
                metrics[f"ap_{key}_s{severity}"] = scores["ap"]
            metrics[f"ap_{key}_mean"] = sum(metrics[f"ap_{key}_s{s}"] for s in SEVERITIES) / len(SEVERITIES)
            bar.advance(1)
    grid = [v for m, v in metrics.items() if not m.endswith("_mean")]
    metrics["mean_corrupted_ap"] = sum(grid) / len(grid)
    clean, _ = _ap(model, subset, data.area_thresholds, config, ctx.device)  # the same images, uncorrupted
    metrics["ap_corrupt_subset_clean"] = clean["ap"]
    return metrics


@register("scenario", "detection")
class Detection(Scenario):
    """Object detection: ATSS with GN towers or Dynamic Head on a zoo backbone; COCO AP and AP under corruptions."""

    name = "detection"
    version = 1
    Config = DetectionConfig
    presets = {
        "smoke": {"n_train": 16, "n_test": 8, "epochs": 1, "batch_size": 8, "channels": 32, "dyhead_blocks": 1,
                  "img_size": 64, "precise_bn": 1, "n_corrupt": 4},
        "paper": {"n_train": None, "n_test": None, "epochs": 12, "batch_size": 16, "lr": 0.01, "channels": 256,
                  "dyhead_blocks": 6, "warmup": 0.01, "precise_bn": 200},
    }
    headline = ("ap", "ap50", "ap75", "mean_corrupted_ap", "train_s")

    def grid(self, cfg: dict[str, Any]) -> list[dict[str, Any]]:
        config = DetectionConfig.from_dict(cfg)
        return [{**cfg, "head": h, "backbone": b} for b in config.backbones() for h in config.heads()]

    def identity(self, cfg: dict[str, Any], preset: str) -> dict[str, Any]:
        return {"dataset": cfg["dataset"], "model": cfg["backbone"], "method": cfg["head"], "attack": None,
                "defense": None}

    def run(self, cfg: dict[str, Any], ctx: RunContext) -> Outcome:
        config = DetectionConfig.from_dict(cfg)
        (head,), (backbone,) = config.heads(), config.backbones()
        data = load_detection(config.dataset, seed=ctx.seed, n_train=config.n_train, n_test=config.n_test,
                              img_size=config.img_size)
        # one stream per backbone, not per head: both heads get the same backbone/FPN init and batch order
        generator = ctx.stream("detector", backbone)
        model = config.detector(data.num_classes)
        hook = (lambda x, y: flip_boxes(x, y, generator)) if config.flip else None
        start = time.perf_counter()
        history = fit(model, data.train, config.recipe(), generator=generator, device=ctx.device, loss_fn=atss_loss,
                      batch_hook=hook, progress=ctx.progress, description=f"train ATSS {head} on {backbone}")
        train_s = time.perf_counter() - start
        ctx.write_json("history.json", history)
        metrics, detections = _ap(model, data.test, data.area_thresholds, config, ctx.device)
        metrics |= {"train_s": train_s, "final_loss": history["loss"][-1], "params_m": count_params(model) / 1e6,
                    "head_params_m": count_params(model.head) / 1e6}
        if config.corruptions:
            metrics |= _corruption_metrics(model, data, config, ctx)
        shown = torch.arange(min(_PANEL_IMAGES, len(data.test)))
        detection_panels(data.test.images[shown].float() / 255, [data.test.objects(int(i)) for i in shown],
                         [(detections[i].boxes, detections[i].scores, detections[i].classes) for i in shown],
                         data.classes, ctx.artifacts / "predictions.png",
                         title=f"{data.name}: ATSS {head} on {backbone}, test AP {metrics['ap']:.3f}")
        better = {m: m not in ("train_s", "final_loss", "params_m", "head_params_m") for m in metrics}
        n_boxes = int((data.test.labels[..., 0] >= 0).sum())
        derived = {"n_train_images": len(data.train), "n_test_images": len(data.test), "n_test_boxes": n_boxes,
                   "classes": list(data.classes), "source": data.source,
                   "area_thresholds": list(data.area_thresholds), "backbone_taps": list(model.backbone.taps),
                   "corruptions": list(DETECTION_CORRUPTIONS) if config.corruptions else []}
        return Outcome(metrics, better, n=n_boxes, dataset_fingerprint=data.fingerprint(), derived=derived)
