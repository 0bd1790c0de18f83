"""The one training and evaluation loop every scenario uses.

Batches are drawn by index from tensors already in memory (on the accelerator when they fit): an
:class:`~secbench.data.base.ImageSet`, or any set with the same ``batch``/``to``/``device``/``nbytes``
surface (:class:`~secbench.data.points.PointSet` for point-cloud segmentation). Augmentation runs on whole batches, instead of a per-sample Python ``Dataset`` with a
``DataLoader``: on small images the per-sample path costs more than the network itself
(``benchmarks/engine.py`` measures the difference). On CUDA the loop uses AMP and channels_last.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from secbench import distributed
from secbench.data.base import ImageSet
from secbench.errors import SecbenchError, TrainingDiverged
from secbench.progress import NullProgress, Progress

AUGMENTATIONS = ("flip", "crop")
SCHEDULES = ("cosine", "triangle", "constant", "step")
OPTIMIZERS = ("sgd", "adam", "adamw")
# Keep a dataset on the GPU only when it leaves most of the memory to the model.
_DEVICE_DATA_FRACTION = 0.25


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch (CPU and CUDA); return a CPU generator for batch order and augmentation."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available; asking for an absent CUDA is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SecbenchError("--device cuda was asked for but no CUDA device is visible; use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise SecbenchError(f"unknown device {name!r}; valid: auto, cpu, cuda")
    return torch.device(name)


class TrainingSet(Protocol):
    """What :func:`fit` draws batches from: :class:`ImageSet`, or :class:`~secbench.data.points.PointSet`."""

    labels: torch.Tensor

    def __len__(self) -> int: ...
    @property
    def device(self) -> torch.device: ...
    @property
    def nbytes(self) -> int: ...
    def to(self, device: torch.device) -> TrainingSet: ...
    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


def place(data: TrainingSet, device: torch.device) -> TrainingSet:
    """Move ``data`` to ``device`` when it fits comfortably, else keep it on the CPU (batches move instead)."""
    if device.type != "cuda":
        return data
    free, _ = torch.cuda.mem_get_info(device)
    return data.to(device) if data.nbytes < _DEVICE_DATA_FRACTION * free else data


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one ``fit``. ``lr`` is the peak learning rate of the schedule."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.05
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "triangle"
    # Fraction of the steps rising linearly to ``lr``: the triangle's peak (None: 0.2); the cosine decays
    # over the steps after it (None: 0, no warm-up). Other schedules ignore it.
    warmup: float | None = None
    step_every: int = 5  # the step schedule multiplies the rate by ``step_gamma`` every ``step_every`` epochs
    step_gamma: float = 0.9
    augment: tuple[str, ...] = field(default=("crop", "flip"))
    crop_pad: int = 4
    label_smoothing: float = 0.0
    precise_bn: int = 50  # batches used to re-estimate BatchNorm statistics after training; 0 turns it off
    ema: float = 0.0  # decay of an exponential moving average of the weights, which replaces them at the end; 0: off
    # (parameter-name prefix, multiple of ``lr``) pairs, the first matching prefix wins; parameters that match
    # none train at ``lr``. E.g. ``(("backbone.", 3.0),)`` gives a randomly initialised detector trunk 3x the head's.
    lr_scale: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        for value, valid, what in ((self.schedule, SCHEDULES, "schedule"), (self.optimizer, OPTIMIZERS, "optimizer")):
            if value not in valid:
                raise SecbenchError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
        unknown = set(self.augment) - set(AUGMENTATIONS)
        if unknown:
            raise SecbenchError(f"unknown augmentation {sorted(unknown)}; valid: {', '.join(AUGMENTATIONS)}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise SecbenchError("epochs, batch size and learning rate must be positive")
        if self.precise_bn < 0:
            raise SecbenchError("--precise-bn counts batches: 0 (off) or more")
        if not 0 <= self.ema < 1:
            raise SecbenchError(f"an EMA decay lies in [0, 1) (0: off), got {self.ema}")
        if self.warmup is not None and not 0 <= self.warmup < 1:
            raise SecbenchError(f"--warmup is a fraction of the steps in [0, 1), got {self.warmup}")
        if self.step_every < 1 or not 0 < self.step_gamma <= 1:
            raise SecbenchError("the step schedule needs step_every >= 1 epoch and 0 < step_gamma <= 1")
        if any(scale <= 0 for _, scale in self.lr_scale):
            raise SecbenchError(f"learning-rate multiples must be positive, got {dict(self.lr_scale)}")

    def lr_multiple(self, name: str) -> float:
        """The multiple of ``lr`` that the parameter called ``name`` trains at."""
        return next((scale for prefix, scale in self.lr_scale if name.startswith(prefix)), 1.0)


def augment_batch(images: torch.Tensor, ops: Sequence[str], generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random horizontal flip and/or reflect-pad random crop, drawn per sample, applied to a whole batch.

    ``images``: ``(N, C, H, W)``. To move a paired target with its input (image-to-image tasks),
    concatenate both along ``C`` first: they then share every sampled transform.
    """
    if not ops:  # e.g. point blocks, which have no image axes
        return images
    n, _, h, w = images.shape
    if "flip" in ops:
        flip = (torch.rand(n, generator=generator) < 0.5).to(images.device)
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    if "crop" in ops and pad > 0:
        padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(images.device)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(images.device)
        c = images.shape[1]
        # two gathers (rows, then columns) are ~3x faster on CPU than one 4-D advanced index
        rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None].expand(n, c, h, w + 2 * pad)
        cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :].expand(n, c, h, w)
        images = padded.gather(2, rows).gather(3, cols)
    return images


def _lr_factor(cfg: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    total_steps = cfg.epochs * steps_per_epoch

    warmup = cfg.warmup if cfg.warmup is not None else {"triangle": 0.2}.get(cfg.schedule, 0.0)

    def factor(step: int) -> float:
        t = step / max(1, total_steps)
        if cfg.schedule == "step":
            return cfg.step_gamma ** (step // steps_per_epoch // cfg.step_every)
        if cfg.schedule in ("cosine", "triangle") and t < warmup:
            return t / warmup
        after = (t - warmup) / (1 - warmup)  # progress through the decay, in [0, 1)
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * after))
        if cfg.schedule == "triangle":
            return max(0.0, 1 - after)
        return 1.0

    return factor


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # Weight decay on norm parameters and biases only hurts small nets; the standard recipe skips them.
    grouped: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            key = (cfg.lr * cfg.lr_multiple(name), cfg.weight_decay if param.ndim > 1 else 0.0)
            grouped.setdefault(key, []).append(param)
    groups = [{"params": params, "lr": lr, "weight_decay": decay} for (lr, decay), params in grouped.items()]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    if cfg.optimizer == "adamw":  # decoupled weight decay: Mobile-Former's and CSWin's optimiser
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)


def _autocast(device: torch.device) -> torch.autocast:
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda")


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move ``model`` to ``device`` in channels_last, which speeds up convolutions on CUDA and, for the
    small nets of CPU runs, on CPU too (1.5-1.6x for cnn-s training; ``benchmarks/engine.py``)."""
    model = model.to(device)
    # Only convolution weights: ``Module.to(memory_format=...)`` trips over some families' custom layers,
    # and channels_last means nothing for the other parameters anyway.
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last)
    return model


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# (model output, labels, the batch's item indices) -> loss: for learners that keep per-item state,
# e.g. a noisy-label corrector's prediction history and corrected labels
ItemLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# One epoch's item order, ``len(inputs)`` indices: a random permutation by default; a sampler may
# repeat or re-balance items (e.g. oversample a small subset so that each batch holds a fixed share).
Sampler = Callable[[torch.Generator], torch.Tensor]
# (images floats in [0, 1], labels) -> the batch to train on, which may hold more images than it was given
BatchHook = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _epoch_order(sampler: Sampler | None, n: int, generator: torch.Generator) -> torch.Tensor:
    order = torch.randperm(n, generator=generator) if sampler is None else sampler(generator)
    if order.shape != (n,):
        raise ValueError(f"a sampler must return {n} indices per epoch, got shape {tuple(order.shape)}")
    return order


def to_model(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch on ``device``, channels_last when it is an image batch (the layout :func:`prepare_model` gives convs)."""
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x


class _WeightAverage:
    """An exponential moving average of a model's floating-point state (weights and BN statistics)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        # state_dict() tensors share storage with the parameters and buffers, which steps update in place
        self.sources = {k: v for k, v in model.state_dict().items() if v.is_floating_point()}
        self.state = {k: v.detach().clone() for k, v in self.sources.items()}

    @torch.no_grad()
    def update(self) -> None:
        for key, average in self.state.items():
            average.lerp_(self.sources[key], 1 - self.decay)

    def copy_to(self, model: nn.Module) -> None:
        model.load_state_dict(self.state, strict=False)


def fit(
    model: nn.Module,
    inputs: TrainingSet,
    cfg: TrainConfig,
    *,
    generator: torch.Generator,
    device: torch.device,
    targets: torch.Tensor | None = None,
    loss_fn: LossFn | None = None,
    item_loss: ItemLoss | None = None,
    sampler: Sampler | None = None,
    progress: Progress | None = None,
    description: str = "train",
    batch_hook: BatchHook | None = None,
) -> dict[str, list[float]]:
    """Train ``model`` in place on ``inputs`` and return the per-epoch history.

    Classification by default: ``inputs.labels`` are the targets and the loss is cross-entropy.
    For image-to-image tasks pass ``targets`` (uint8 ``(N, C, H, W)``, aligned with ``inputs``) and
    a ``loss_fn(prediction, target)``; both images then get the same augmentation. Any other
    ``loss_fn`` gets ``(model output, inputs.labels)``; the history's ``acc`` is then NaN, as only the
    built-in loss says what the output means. ``sampler`` orders each epoch (and the precise-BN pass).
    ``batch_hook(images, labels)`` sees every batch before augmentation, in training and in the
    precise-BN pass, and returns the batch to use, which may be larger: a training-controlled
    backdoor attacker appends a poisoned batch to each clean one. With ``targets`` it gets
    ``(images, float targets)`` instead, e.g. a thief's augmentation of both images of each pair.
    ``item_loss(output, labels, index)`` replaces ``loss_fn`` for a learner that tracks items across
    epochs (it sees every item once per epoch unless a ``sampler`` says otherwise). With ``cfg.ema`` the
    weights' moving average replaces the weights at the end (before precise BN).
    History values are per image trained on. A non-finite loss raises :class:`TrainingDiverged`.
    """
    if item_loss is not None and (loss_fn is not None or targets is not None):
        raise ValueError("item_loss replaces loss_fn and targets; give one of them")
    progress = progress or NullProgress()
    data = place(inputs, device)
    paired = targets.to(data.device) if targets is not None else None
    classify = paired is None and loss_fn is None and item_loss is None
    loss_fn = loss_fn or (lambda out, y: F.cross_entropy(out, y, label_smoothing=cfg.label_smoothing))
    model = prepare_model(model, device)
    world, shard = distributed.world_size(), distributed.rank()
    # Under torchrun each rank trains on its shard of every (identically drawn) batch and DDP averages the
    # gradients, which is the full batch's mean gradient; BatchNorm normalises per shard (no SyncBatchNorm on CPU).
    net = model if world == 1 else nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = make_optimizer(model, cfg)
    steps_per_epoch = math.ceil(len(data) / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    lr_factor = _lr_factor(cfg, steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    average = _WeightAverage(model, cfg.ema) if cfg.ema else None
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda" and not torch.cuda.is_bf16_supported())
    history: dict[str, list[float]] = {"loss": [], "acc": [], "lr": [], "epoch_s": []}

    model.train()
    with progress.task(description, total=total_steps) as bar:
        for epoch in range(cfg.epochs):
            start = time.perf_counter()
            order = _epoch_order(sampler, len(data), generator).to(data.device)
            loss_sum, seen = 0.0, 0
            correct = torch.zeros((), device=device)
            for step in range(steps_per_epoch):
                index = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
                x, y = data.batch(index)
                if paired is not None:
                    y = paired[index].float().div(255)
                if batch_hook is not None:
                    x, y = batch_hook(x, y)
                if paired is not None:
                    both = augment_batch(torch.cat([x, y.to(x.device)], 1), cfg.augment, generator, cfg.crop_pad)
                    x, y = both[:, : x.shape[1]], both[:, x.shape[1] :]
                else:
                    x = augment_batch(x, cfg.augment, generator, cfg.crop_pad)
                x, y = to_model(x, device), y.to(device, non_blocking=True)
                if world > 1:
                    x, y, index = x[shard::world], y[shard::world], index[shard::world]
                with _autocast(device):
                    out = net(x)
                    loss = loss_fn(out, y) if item_loss is None else item_loss(out, y, index)
                loss_value = loss.item()  # one sync per step, also the NaN guard
                if not math.isfinite(loss_value):
                    raise TrainingDiverged(f"{description}: loss became {loss_value} at epoch {epoch + 1}, step {step + 1}")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                if average is not None:
                    average.update()
                loss_sum += loss_value * len(x)
                seen += len(x)
                if classify:
                    correct += (out.argmax(1) == y).sum()
                bar.advance(1, epoch=epoch + 1, loss=loss_value)
            loss_sum, seen, hits = distributed.global_sum(loss_sum, seen, correct.item())
            history["loss"].append(loss_sum / seen)
            history["acc"].append(hits / seen if classify else float("nan"))
            history["lr"].append(cfg.lr * lr_factor(scheduler.last_epoch))  # at ``cfg.lr``, whatever lr_scale says
            history["epoch_s"].append(time.perf_counter() - start)
    if average is not None:
        average.copy_to(model)
    if cfg.precise_bn:
        recalibrate_batchnorm(model, data, batches=cfg.precise_bn, batch_size=cfg.batch_size, generator=generator,
                              device=device, sampler=sampler, batch_hook=batch_hook)
    model.eval()
    return history


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, data: TrainingSet, *, batches: int, batch_size: int,
                          generator: torch.Generator, device: torch.device, sampler: Sampler | None = None,
                          batch_hook: BatchHook | None = None) -> int:
    """Re-estimate every BatchNorm's running statistics as a plain average over ``batches`` un-augmented
    training batches with the final weights ("precise BN", Wu & Johnson, arXiv 2105.07576).

    Why: the running averages (momentum 0.1) still carry their initial values after the few hundred steps
    of a CPU-sized run. Networks whose activations are small at the start (MicroNet's grouped convolutions,
    Mobile-Former) then normalise by a variance up to 10^3 times too large in eval mode and fall to chance
    accuracy although they fit the training data. Returns the number of images used.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    model.train()
    order = _epoch_order(sampler, len(data), generator).to(data.device)
    used = 0
    for step in range(min(batches, math.ceil(len(data) / batch_size))):
        x, y = data.batch(order[step * batch_size : (step + 1) * batch_size])
        if batch_hook is not None:
            x, _ = batch_hook(x, y)
        with _autocast(device):
            model(to_model(x, device))
        used += len(x)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    return used


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, *, device: torch.device, batch_size: int = 512) -> torch.Tensor:
    """Model outputs for ``(N, C, H, W)`` images (uint8, or float in [0, 1]), or any other float inputs
    (point blocks ``(N, 9, P)``), in batches; on the CPU as float32."""
    model.eval()
    outs = []
    for start in range(0, len(images), batch_size):
        x = to_model(images[start : start + batch_size], device)
        x = x.float().div_(255) if x.dtype == torch.uint8 else x
        with _autocast(device):
            outs.append(model(x).float().cpu())
    return torch.cat(outs)


def accuracy(model: nn.Module, data: ImageSet, *, device: torch.device, batch_size: int = 512) -> float:
    """Top-1 accuracy of ``model`` on ``data`` (fraction in [0, 1])."""
    logits = predict(model, data.images, device=device, batch_size=batch_size)
    return (logits.argmax(1) == data.labels.cpu()).float().mean().item()
