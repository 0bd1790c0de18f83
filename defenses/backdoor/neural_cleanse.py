"""Neural Cleanse (Wang et al., IEEE S&P 2019; code ``bolunwang/backdoor``): reverse-engineer the smallest
trigger that sends clean images to each label, flag labels whose trigger is abnormally small, unlearn.

Per label k a mask ``m`` (H×W, shared by the channels) and a pattern ``p`` (3×H×W), both in [0, 1] through
``tanh / 2 + 0.5``, stamp ``x' = (1 − m)·x + m·p``; Adam (lr 0.1, betas 0.5/0.9) minimises
``CE(f(x'), k) + cost·|m|₁`` over batches of 32 clean images. The cost starts at 1e-3 and adapts once per
pass over the clean data ("epoch"): after 5 epochs at ≥ 99% attack success it is multiplied by 2, after
5 below it divided by 2^1.5; the smallest mask reaching 99% is kept (no early stop: every label runs all
its steps, which keeps batched and sequential runs comparable). All labels train together: one
forward pass of K×32 stamped images per step (``--sequential``: the authors' one-label-at-a-time loop,
the same steps per label). Outlier test: anomaly index |‖m‖₁ − median| / (1.4826·MAD) over the labels;
a label below the median with index > 2 is flagged. Mitigation, either of the paper's two:
``unlearning`` (default, as BackdoorBench) fine-tunes on the clean data with a flagged label's reversed
trigger stamped on 20% of the images, true labels kept; ``pruning`` zeroes the channels of the pooled last
conv block (the neurons feeding the classifier) in decreasing order of how much more the reversed trigger
excites them than clean images do, one at a time, until the trigger no longer works (success below 5%,
secbench's choice of stop point) or 30% of the channels are gone (ART's cap); no fine-tuning.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from defenses.backdoor.base import BackdoorDefense, DefenseInputs, DefenseResult  # noqa: E402
from defenses.backdoor.fine_pruning import ChannelMask, channel_activations  # noqa: E402
from defenses.backdoor.layers import last_conv_module, module_names  # noqa: E402
from secbench.data.base import ImageSet  # noqa: E402
from secbench.engine import accuracy, fit  # noqa: E402
from secbench.imageops import to_uint8  # noqa: E402
from secbench.progress import NullProgress, Progress  # noqa: E402
from secbench.registry import register  # noqa: E402

if TYPE_CHECKING:
    from secbench.scenarios.base import RunContext

CONSISTENCY = 1.4826  # MAD of a normal sample times this estimates its standard deviation
MITIGATIONS = ("unlearning", "pruning")
UNRESPONSIVE = 0.05  # pruning stops once the reversed trigger sends fewer images than this to its label
MAX_PRUNED = 0.3  # ... or when this share of the channels is pruned (ART's cap)
_EPS = 1e-6  # keeps atanh finite at the [0, 1] ends


@dataclass(frozen=True)
class ReversedTriggers:
    """One reversed trigger per label: ``masks`` ``(K, 1, H, W)`` and ``patterns`` ``(K, 3, H, W)`` in [0, 1],
    ``norms`` ``(K,)`` the masks' L1 norms, ``success`` ``(K,)`` the attack success of each kept trigger on
    its last epoch, ``labels`` the K labels."""

    labels: tuple[int, ...]
    masks: torch.Tensor
    patterns: torch.Tensor
    norms: torch.Tensor
    success: torch.Tensor

    def stamp(self, images: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        """``images`` ``(N, 3, H, W)`` in [0, 1] with trigger ``which[i]`` (a row of this object) stamped on image i."""
        mask, pattern = self.masks[which].to(images.device), self.patterns[which].to(images.device)
        return (1 - mask) * images + mask * pattern


def stamp(images: torch.Tensor, masks: torch.Tensor, patterns: torch.Tensor) -> torch.Tensor:
    """Every image under every trigger: ``(B, 3, H, W)`` × K triggers → ``(K·B, 3, H, W)``, label-major."""
    return ((1 - masks[:, None]) * images[None] + masks[:, None] * patterns[:, None]).flatten(0, 1)


def _to_tanh_space(x: torch.Tensor) -> torch.Tensor:
    return torch.atanh((x - 0.5) * (2 - _EPS))


def reverse_engineer(model: nn.Module, data: ImageSet, labels: Sequence[int], *, steps: int, seed: int,
                     device: torch.device, batch_size: int = 32, lr: float = 0.1, init_cost: float = 1e-3,
                     threshold: float = 0.99, patience: int = 5, cost_up: float = 2.0, cost_down: float = 2.0**1.5,
                     progress: Progress | None = None) -> ReversedTriggers:
    """Optimise one trigger per label of ``labels`` against the frozen ``model`` for ``steps`` steps each, all
    labels in the same batched steps (one label: the authors' loop). ``data``: the clean images.

    Each label's starting point comes from its own seed and the batch order from ``seed``, so a label
    follows the same trajectory whichever labels share its run (up to float rounding)."""
    progress = progress or NullProgress()
    k, (_, c, h, w) = len(labels), data.images.shape
    images = data.images.to(device)
    targets = torch.as_tensor(labels, device=device)
    # the authors start from uniform noise: mask in [0, 1]^(H×W), pattern in [0, 1]^(3×H×W)
    starts = [torch.Generator().manual_seed(seed * 1_000_003 + label) for label in labels]
    mask_param = torch.stack([torch.rand(1, h, w, generator=g) for g in starts])
    pattern_param = torch.stack([torch.rand(c, h, w, generator=g) for g in starts])
    mask_param = _to_tanh_space(mask_param).to(device).requires_grad_()
    pattern_param = _to_tanh_space(pattern_param).to(device).requires_grad_()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam([mask_param, pattern_param], lr=lr, betas=(0.5, 0.9))
    cost = torch.full((k,), init_cost, device=device)
    up, down = torch.zeros(k, dtype=torch.long), torch.zeros(k, dtype=torch.long)
    best_norm = torch.full((k,), float("inf"))
    best_mask, best_pattern = torch.zeros(k, 1, h, w), torch.zeros(k, c, h, w)
    success = torch.zeros(k)
    epoch_steps = max(1, -(-len(data) // batch_size))
    hits, seen = torch.zeros(k, device=device), 0

    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    model.eval()
    try:
        with progress.task(f"neural-cleanse: reverse-engineer {k} label(s)", total=steps) as bar:
            for step in range(steps):
                index = torch.randint(len(data), (batch_size,), generator=generator).to(device)
                x = images[index].float().div(255)
                mask, pattern = torch.tanh(mask_param) / 2 + 0.5, torch.tanh(pattern_param) / 2 + 0.5
                logits = model(stamp(x, mask, pattern))
                wanted = targets.repeat_interleave(len(x))
                ce = F.cross_entropy(logits, wanted, reduction="none").view(k, -1).mean(1)
                norms = mask.abs().flatten(1).sum(1)
                loss = (ce + cost * norms).sum()  # labels share no parameters: the sum trains each on its own
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                hits += (logits.argmax(1) == wanted).view(k, -1).float().sum(1).detach()
                seen += len(x)
                bar.advance(1)
                if (step + 1) % epoch_steps and step + 1 < steps:
                    continue
                # end of an epoch: keep the smallest successful masks, then adapt each label's cost
                rate, epoch_norm = (hits / seen).cpu(), norms.detach().cpu()
                hits.zero_()
                seen = 0
                better = (rate >= threshold) & (epoch_norm < best_norm)
                best_norm = torch.where(better, epoch_norm, best_norm)
                best_mask[better], best_pattern[better] = mask.detach().cpu()[better], pattern.detach().cpu()[better]
                success = torch.where(better, rate, success)
                reached = rate >= threshold
                up, down = torch.where(reached, up + 1, 0), torch.where(reached, 0, down + 1)
                factor = torch.ones(k)
                factor[up >= patience], factor[down >= patience] = cost_up, 1 / cost_down
                up[up >= patience], down[down >= patience] = 0, 0
                cost = cost * factor.to(device)
                last = (rate, mask.detach().cpu(), pattern.detach().cpu(), epoch_norm)
    finally:
        for p in frozen:
            p.requires_grad_(True)
    # a label whose trigger never reached the threshold keeps its last one (it cannot look anomalous by luck)
    never = torch.isinf(best_norm)
    best_mask[never], best_pattern[never] = last[1][never], last[2][never]
    success = torch.where(never, last[0], success)
    norms = best_mask.flatten(1).sum(1)
    return ReversedTriggers(tuple(int(label) for label in labels), best_mask, best_pattern, norms, success)


def reverse_all(model: nn.Module, data: ImageSet, num_classes: int, *, sequential: bool, steps: int, seed: int,
                device: torch.device, progress: Progress | None = None) -> ReversedTriggers:
    """A trigger for every label, batched or one label after the other: the same steps, batches and
    starting points either way."""
    if not sequential:
        return reverse_engineer(model, data, range(num_classes), steps=steps, seed=seed, device=device,
                                progress=progress)
    parts = [reverse_engineer(model, data, [k], steps=steps, seed=seed, device=device, progress=progress)
             for k in range(num_classes)]
    return ReversedTriggers(tuple(range(num_classes)), *(torch.cat([getattr(p, f) for p in parts])
                                                         for f in ("masks", "patterns", "norms", "success")))


def anomaly_index(values: torch.Tensor) -> torch.Tensor:
    """|x − median| / (1.4826 · median(|x − median|)) for each entry of ``values`` ``(K,)``; the median is
    numpy's (the mean of the middle two for even K), as in the authors' code. A zero MAD gives ∞ for
    every value off the median."""
    x = values.double()
    median = x.quantile(0.5)
    deviation = (x - median).abs()
    mad = CONSISTENCY * deviation.quantile(0.5)
    return deviation / mad if mad > 0 else torch.where(deviation > 0, float("inf"), 0.0)


def flagged_labels(norms: torch.Tensor, threshold: float = 2.0) -> list[int]:
    """Labels whose mask norm lies below the median with anomaly index > ``threshold``, smallest norm first."""
    index = anomaly_index(norms)
    small = (norms.double() < norms.double().quantile(0.5)) & (index > threshold)
    return sorted(torch.nonzero(small).flatten().tolist(), key=lambda k: norms[k].item())


def save_triggers(triggers: ReversedTriggers, flagged: Sequence[int], path: Path, *, title: str) -> Path:
    """Mask and mask·pattern of every label in one PNG; flagged labels titled in red."""
    index = anomaly_index(triggers.norms)
    k = len(triggers.labels)
    fig, axes = plt.subplots(2, k, figsize=(0.4 + 1.15 * k, 3.2), dpi=120, squeeze=False)
    rows = (triggers.masks.expand(-1, 3, -1, -1), triggers.masks * triggers.patterns)
    for r, images in enumerate(rows):
        for j in range(k):
            ax = axes[r][j]
            ax.imshow(images[j].clamp(0, 1).permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
    for j, label in enumerate(triggers.labels):
        hit = label in flagged
        axes[0][j].set_title(f"{label}{' FLAGGED' if hit else ''}\nL1 {triggers.norms[j]:.0f}, AI {index[j]:.1f}",
                             fontsize=7, color="red" if hit else "black")
        if hit:
            for ax in axes[:, j]:
                for spine in ax.spines.values():
                    spine.set(color="red", linewidth=2)
    axes[0][0].set_ylabel("mask", fontsize=8)
    axes[1][0].set_ylabel("mask x pattern", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


class Unlearning:
    """A ``fit`` batch hook: each image gets, with probability ``ratio``, a flagged label's reversed trigger
    (one drawn per image), its true label kept, so that fine-tuning teaches the model to ignore it."""

    def __init__(self, triggers: ReversedTriggers, flagged: Sequence[int], *, ratio: float, seed: int):
        self.triggers, self.flagged, self.ratio = triggers, torch.as_tensor(list(flagged)), ratio
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        chosen = torch.rand(len(images), generator=self.generator) < self.ratio
        which = self.flagged[torch.randint(len(self.flagged), (len(images),), generator=self.generator)]
        stamped = self.triggers.stamp(images, which)
        return torch.where(chosen[:, None, None, None].to(images.device), stamped, images), labels


def prune_for_trigger(model: nn.Module, triggers: ReversedTriggers, flagged: Sequence[int], clean: ImageSet, *,
                      device: torch.device) -> tuple[nn.Module, list[int], list[float]]:
    """The paper's pruning mitigation: mask (forward hook, kept on the model) the last conv block's channels
    in decreasing order of mean activation on ``clean`` images stamped with a flagged trigger minus on the
    clean images themselves, one per step, until the triggers' success on the stamped images (those not
    already of the trigger's label) is below ``UNRESPONSIVE`` or ``MAX_PRUNED`` of the channels are masked.
    Returns the model, the pruned channels in order and the success before each step and after the last."""
    layer = last_conv_module(model)
    keep = ~torch.isin(clean.labels, torch.as_tensor(list(flagged)))
    images = clean.images[keep]
    which = torch.as_tensor(list(flagged))[torch.arange(len(images)) % len(flagged)]
    stamped = ImageSet(to_uint8(triggers.stamp(images.float() / 255, which)),
                       torch.as_tensor(triggers.labels)[which])
    gap = (channel_activations(model, layer, stamped, device=device)
           - channel_activations(model, layer, ImageSet(images, clean.labels[keep]), device=device))
    order = torch.argsort(gap, descending=True, stable=True)
    mask = ChannelMask(len(order))
    layer.register_forward_hook(mask)
    success = [accuracy(model, stamped, device=device)]
    pruned = 0
    while success[-1] >= UNRESPONSIVE and pruned + 1 <= MAX_PRUNED * len(order):
        pruned += 1
        mask.prune(order[:pruned])
        success.append(accuracy(model, stamped, device=device))
    return model, order[:pruned].tolist(), success


@register("defense", "neural-cleanse")
@dataclass(kw_only=True)
class NeuralCleanse(BackdoorDefense):
    """Neural Cleanse (IEEE S&P 2019): reversed trigger per label, MAD outlier test, unlearning or pruning.

    Args:
        nc_steps: optimisation steps per label (batches of 32 clean images).
        sequential: one label after the other (the authors' loop) instead of all labels in one batched run.
        unlearn_ratio: share of the fine-tuning images stamped with the reversed trigger (BackdoorBench: 0.2).
        anomaly_threshold: the anomaly index above which a small-norm label is flagged (the paper's 2).
        nc_mitigation: ``unlearning`` or ``pruning`` of the flagged labels' backdoor.
    """

    name: ClassVar[str] = "neural-cleanse"
    nc_steps: int = 300
    sequential: bool = False
    unlearn_ratio: float = 0.2
    anomaly_threshold: float = 2.0
    nc_mitigation: str = "unlearning"

    def run(self, inputs: DefenseInputs, ctx: RunContext) -> DefenseResult:
        clock = time.perf_counter()
        triggers = reverse_all(inputs.model, inputs.budget, inputs.num_classes, sequential=self.sequential,
                               steps=self.nc_steps, seed=self.seed, device=ctx.device, progress=ctx.progress)
        reverse_s = time.perf_counter() - clock
        flagged = flagged_labels(triggers.norms, self.anomaly_threshold)
        index = anomaly_index(triggers.norms)
        save_triggers(triggers, flagged, ctx.artifacts / "neural_cleanse_triggers.png",
                      title="Neural Cleanse: reversed trigger per label (red: flagged)")
        model, derived = inputs.model, {}
        # nothing to mitigate when no label looks backdoored: the model is deployed as it is
        if flagged and self.nc_mitigation == "pruning":
            model, channels, success = prune_for_trigger(model, triggers, flagged, inputs.budget, device=ctx.device)
            derived = {"nc_pruned_layer": module_names(model, [last_conv_module(model)])[0],
                       "nc_pruned_channels": channels, "nc_prune_success": [round(v, 4) for v in success]}
        elif flagged:
            fit(model, inputs.budget, inputs.finetune, generator=torch.Generator().manual_seed(self.seed),
                device=ctx.device, progress=ctx.progress, description="neural-cleanse: unlearn reversed trigger",
                batch_hook=Unlearning(triggers, flagged, ratio=self.unlearn_ratio, seed=self.seed))
        below = triggers.norms.double() < triggers.norms.double().quantile(0.5)
        metrics = {"nc_detected": float(bool(flagged)), "nc_n_flagged": float(len(flagged)),
                   "nc_max_anomaly": index[below].max().item() if below.any() else 0.0, "nc_reverse_s": reverse_s}
        better = {"nc_detected": True, "nc_n_flagged": False, "nc_max_anomaly": True, "nc_reverse_s": False}
        if inputs.target is not None:
            metrics |= {"nc_target_flagged": float(inputs.target in flagged),
                        "nc_target_anomaly": index[inputs.target].item()}
            better |= {"nc_target_flagged": True, "nc_target_anomaly": True}
        derived |= {"nc_flagged": flagged, "nc_detected_target": flagged[0] if flagged else None,
                   "nc_norms": [round(v, 2) for v in triggers.norms.tolist()],
                   "nc_anomaly_index": [round(v, 3) for v in index.tolist()],
                   "nc_trigger_success": [round(v, 3) for v in triggers.success.tolist()]}
        return DefenseResult(model, metrics, better, derived)
