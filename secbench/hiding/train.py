"""Joint training of embedder H and extractor R (plus an optional PatchGAN D), and R's fine-tuning.

The losses follow Zhang et al.'s official code (``Initial stage/main.py``, watermarking.md §A1) and
Poison Ink's ``IN_GE.py`` (backdoor.md §1.1), with every MSE scaled by ``mse_scale`` (1e4 in both):

- embedding: ``fidelity(t) · MSE(H(b ⊕ m), b) + gan_weight · LSGAN(D(H(b ⊕ m)) → real)``;
- extraction (:func:`extractor_loss`): the (weighted) MSE of R's output on marked images to the
  expected mark, ``clean_weight`` × the MSE of R on unmarked images to the blank, and for a fixed
  logo ``consistency_weight`` × the MSE between extractions from the two halves of the batch;
- D: ``0.5 · (LSGAN(D(b) → real) + LSGAN(D(H(·)) → fake))``.

``fidelity`` ramps geometrically from its first to its second value over training. The official
code keeps it constant (1, 1), which needs its 200 epochs; a short CPU run with a constant weight
ends in one of two corners — no watermark at all, or a visible one (watermarking.md, "CPU budget")
— so ``quick`` starts low, lets R find a signal, and then squeezes it out of sight. Interference
stages split the steps equally: the incremental schedule (e.g. rotate, then + crop, then + flip).
Training is float32 on every device: the 1e4-scaled MSEs of near-invisible residuals are what
half precision rounds away.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from secbench.engine import prepare_model
from secbench.errors import TrainingDiverged
from secbench.hiding.embedder import BoundedResidual
from secbench.hiding.interference import Interference, Transform
from secbench.hiding.marks import BLANK, Mark
from secbench.progress import NullProgress, Progress


@dataclass(frozen=True)
class HidingConfig:
    """Steps are optimizer updates of ``batch_size`` images (even: the consistency loss pairs halves)."""

    steps: int
    batch_size: int = 16
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    mse_scale: float = 1e4
    fidelity: tuple[float, float] = (1.0, 1.0)
    gan_weight: float = 0.01
    clean_weight: float = 1.0
    consistency_weight: float = 1.0
    stages: tuple[tuple[str, ...], ...] = ((),)
    interference: Interference = field(default_factory=Interference)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 2 or self.batch_size % 2:
            raise ValueError(f"need steps >= 1 and an even batch_size >= 2, got {self.steps}, {self.batch_size}")

    def fidelity_at(self, step: int) -> float:
        start, end = self.fidelity
        return start * (end / start) ** (step / max(1, self.steps - 1))

    def ops_at(self, step: int) -> tuple[str, ...]:
        return self.stages[min(len(self.stages) - 1, step * len(self.stages) // self.steps)]


@dataclass
class HidingNets:
    embedder: nn.Module  # (N, 6, H, W) cover ⊕ hidden mark → (N, 3, H, W) marked
    extractor: nn.Module  # (N, 3, H, W) → (N, 3, H, W) mark or blank
    discriminator: nn.Module | None = None  # (N, 3, H, W) → patch scores

    def embed(self, covers: torch.Tensor, mark: Mark, key: torch.Tensor) -> torch.Tensor:
        return self.embedder(torch.cat([covers, mark.hidden(covers, key)], 1))


def _weighted_mse(output: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    squared = (output - target).square()
    return squared.mean() if weights is None else (weights * squared).mean()


def extractor_loss(
    extractor: nn.Module,
    marked: torch.Tensor,
    reference: torch.Tensor,
    unmarked: Sequence[torch.Tensor],
    mark: Mark,
    key: torch.Tensor,
    cfg: HidingConfig,
) -> torch.Tensor:
    """R's loss: ``marked`` images must give ``mark.expected(reference, key)``, ``unmarked`` ones the blank.

    ``reference`` is the image whose structure defines the expected mark (the transformed clean
    cover in joint training, the marked image itself when fine-tuning).
    """
    # one forward for all images: R normalises per image, so batching changes nothing but the speed
    readings = extractor(torch.cat([marked, *unmarked]))
    extracted = readings[: len(marked)]
    loss = _weighted_mse(extracted, mark.expected(reference, key), mark.weights(reference))
    for blank in readings[len(marked) :].split([len(u) for u in unmarked]) if unmarked else ():
        loss = loss + cfg.clean_weight * (blank - BLANK).square().mean()
    if mark.consistency:
        half = len(extracted) // 2
        loss = loss + cfg.consistency_weight * F.mse_loss(extracted[:half], extracted[half : 2 * half])
    return cfg.mse_scale * loss


def _lsgan(scores: torch.Tensor, real: bool) -> torch.Tensor:
    return (scores - float(real)).square().mean()


def _check(loss: torch.Tensor, what: str, step: int) -> float:
    value = loss.item()
    if not math.isfinite(value):
        raise TrainingDiverged(f"{what}: loss became {value} at step {step + 1}")
    return value


def train_hiding(
    nets: HidingNets,
    covers: torch.Tensor,
    mark: Mark,
    cfg: HidingConfig,
    *,
    generator: torch.Generator,
    device: torch.device,
    unmarked: torch.Tensor | None = None,
    progress: Progress | None = None,
    description: str = "train embedder + extractor",
) -> dict[str, list[float]]:
    """Train H and R (and D) in place on ``covers``, float ``(N, 3, H, W)`` in [0, 1].

    ``unmarked`` (aligned with ``covers``, e.g. the task's inputs) are further images R must map
    to the blank, besides the clean covers themselves. Returns the per-step losses and PSNR.
    """
    progress = progress or NullProgress()
    modules = [m for m in (nets.embedder, nets.extractor, nets.discriminator) if m is not None]
    for module in modules:
        prepare_model(module, device).train()
    covers = covers.to(device)
    unmarked = unmarked.to(device) if unmarked is not None else None
    optimizer = torch.optim.Adam([*nets.embedder.parameters(), *nets.extractor.parameters()], lr=cfg.lr,
                                 betas=cfg.betas)
    d_optimizer = (torch.optim.Adam(nets.discriminator.parameters(), lr=cfg.lr, betas=cfg.betas)
                   if nets.discriminator is not None else None)
    history: dict[str, list[float]] = {"loss": [], "fidelity_mse": [], "extract_loss": []}
    with progress.task(description, total=cfg.steps) as bar:
        for step in range(cfg.steps):
            index = torch.randint(len(covers), (cfg.batch_size,), generator=generator,
                                  device=generator.device).to(device)
            batch = covers[index]
            if isinstance(nets.embedder, BoundedResidual):
                nets.embedder.anneal(step / max(1, cfg.steps - 1))
            key = mark.sample_key(len(batch), generator)
            marked = nets.embed(batch, mark, key)
            fidelity = F.mse_loss(marked, batch)
            loss = cfg.fidelity_at(step) * cfg.mse_scale * fidelity
            if nets.discriminator is not None:
                loss = loss + cfg.gan_weight * _lsgan(nets.discriminator(marked), real=True)
            transform: Transform = cfg.interference.sample(len(batch), cfg.ops_at(step), generator)
            clean = [transform(batch)] + ([transform(unmarked[index])] if unmarked is not None else [])
            r_loss = extractor_loss(nets.extractor, transform.noisy(marked, generator), clean[0], clean, mark, key,
                                    cfg)
            total = loss + r_loss
            value = _check(total, description, step)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            if d_optimizer is not None and nets.discriminator is not None:
                d_loss = 0.5 * cfg.mse_scale * (_lsgan(nets.discriminator(batch), real=True)
                                                + _lsgan(nets.discriminator(marked.detach()), real=False))
                _check(d_loss, f"{description} (discriminator)", step)
                d_optimizer.zero_grad(set_to_none=True)
                d_loss.backward()
                d_optimizer.step()
            history["loss"].append(value)
            history["fidelity_mse"].append(fidelity.item())
            history["extract_loss"].append(r_loss.item())
            bar.advance(1, loss=value)
    for module in modules:
        module.eval()
    return history


def tune_extractor(
    extractor: nn.Module,
    marked: Sequence[torch.Tensor],
    references: Sequence[torch.Tensor],
    unmarked: Sequence[torch.Tensor],
    mark: Mark,
    cfg: HidingConfig,
    *,
    generator: torch.Generator,
    device: torch.device,
    progress: Progress | None = None,
    description: str = "fine-tune extractor",
) -> dict[str, list[float]]:
    """Stage 2 (official ``adversarial stage``): fine-tune R alone, in place, so that every set in
    ``marked`` (e.g. H's outputs and the outputs of a surrogate the owner trained on them) gives the
    mark expected of the matching set in ``references`` (the clean covers), and every set in
    ``unmarked`` the blank. All sets are float ``(N, 3, H, W)``, aligned. With interference stages,
    each marked image and its reference go through one draw of the last stage's transforms.
    """
    progress = progress or NullProgress()
    prepare_model(extractor, device).train()
    marked, references = [m.to(device) for m in marked], [r.to(device) for r in references]
    unmarked = [u.to(device) for u in unmarked]
    optimizer = torch.optim.Adam(extractor.parameters(), lr=cfg.lr, betas=cfg.betas)
    history: dict[str, list[float]] = {"loss": []}
    n = len(marked[0])
    with progress.task(description, total=cfg.steps) as bar:
        for step in range(cfg.steps):
            index = torch.randint(n, (cfg.batch_size,), generator=generator, device=generator.device).to(device)
            positives = torch.cat([m[index] for m in marked])
            key = mark.sample_key(len(positives), generator)
            transform = cfg.interference.sample(len(positives), cfg.stages[-1], generator)
            moved = transform(torch.cat([r[index] for r in references]))
            clean_transform = cfg.interference.sample(len(index), cfg.stages[-1], generator)
            loss = extractor_loss(extractor, transform.noisy(positives, generator), moved,
                                  [clean_transform(u[index]) for u in unmarked], mark, key, cfg)
            value = _check(loss, description, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history["loss"].append(value)
            bar.advance(1, loss=value)
    extractor.eval()
    return history
