"""Fine-Pruning (Liu, Dolan-Gavitt, Garg, RAID 2018; code ``kangliucn/Fine-pruning-defense``): prune the last
conv layer's channels that stay dormant on clean data, where a backdoor tends to hide, then fine-tune.

Each output channel of the pooled last conv block (:func:`defenses.backdoor.layers.last_conv_module`;
``layer4`` of preact-resnet18, as BackdoorBench hooks it) is ranked by its mean activation over the
defender's clean images and positions. Channels are pruned in increasing order of activation, 1% of the
channels per step (at least one), while the clean accuracy on the defender's data stays within a relative
drop of ``prune_drop`` (BackdoorBench's rule; the paper's own stopping point is unverified); the last count
within it is kept. A pruned channel is masked to exactly zero by a forward hook on that block, which stays
on the deployed model, so fine-tuning on the clean data afterwards (the shared ``finetune`` recipe) cannot
revive it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from defenses.backdoor.base import BackdoorDefense, DefenseInputs, DefenseResult
from defenses.backdoor.layers import last_conv_module, module_names, recording
from secbench.data.base import ImageSet
from secbench.engine import accuracy, fit
from secbench.registry import register

if TYPE_CHECKING:
    from secbench.scenarios.base import RunContext


class ChannelMask:
    """A forward hook multiplying a module's ``(N, C, ...)`` output by ``keep`` ``(C,)`` (1 kept, 0 pruned)."""

    def __init__(self, channels: int) -> None:
        self.keep = torch.ones(channels)

    def __call__(self, _module: nn.Module, _args: tuple, output: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (output.ndim - 2)
        return output * self.keep.to(output.device, output.dtype).view(shape)

    def prune(self, channels: torch.Tensor) -> None:
        """Mask exactly ``channels`` (indices), unmask the others."""
        self.keep.fill_(1.0)
        self.keep[channels] = 0.0


@torch.no_grad()
def channel_activations(model: nn.Module, module: nn.Module, data: ImageSet, *, device: torch.device,
                        batch_size: int = 256) -> torch.Tensor:
    """Mean output of each channel of ``module`` over ``data``'s images and positions, in eval mode: ``(C,)``."""
    model.eval()
    total, count = None, 0
    with recording([module]) as outputs:
        for start in range(0, len(data), batch_size):
            x = data.images[start : start + batch_size].to(device).float().div_(255)
            model(x.contiguous(memory_format=torch.channels_last))
            out = outputs[0].float()
            sums = out.transpose(0, 1).flatten(1).sum(1)
            total = sums if total is None else total + sums
            count += out.numel() // out.shape[1]
    return (total / count).cpu()


def prune_count(accuracy_after: Callable[[int], float], channels: int, max_drop: float) -> tuple[int, dict[int, float]]:
    """How many of ``channels`` to prune: steps of 1% (at least one channel), never all of them, while
    ``(acc(0) − acc(k)) / acc(0) ≤ max_drop``; the first step beyond it stops the search. ``accuracy_after(k)``
    is the clean accuracy with the ``k`` least active channels pruned. Returns the count and every
    accuracy measured, by count (from 0)."""
    step = max(1, round(channels / 100))
    curve = {0: accuracy_after(0)}
    kept = 0
    for k in range(step, channels, step):
        curve[k] = accuracy_after(k)
        if curve[0] > 0 and (curve[0] - curve[k]) / curve[0] > max_drop:
            break
        kept = k
    return kept, curve


@register("defense", "fine-pruning")
@dataclass(kw_only=True)
class FinePruning(BackdoorDefense):
    """Fine-Pruning (RAID 2018): prune the least active last-conv channels on clean data, then fine-tune.

    Args:
        prune_drop: the largest relative clean-accuracy drop (on the defender's data) pruning may cause.
    """

    name: ClassVar[str] = "fine-pruning"
    prune_drop: float = 0.1

    def run(self, inputs: DefenseInputs, ctx: RunContext) -> DefenseResult:
        model, device = inputs.model.to(ctx.device), ctx.device
        layer = last_conv_module(model)
        activation = channel_activations(model, layer, inputs.budget, device=device)
        order = torch.argsort(activation, stable=True)
        mask = ChannelMask(len(activation))
        layer.register_forward_hook(mask)

        def accuracy_after(k: int) -> float:
            mask.prune(order[:k])
            return accuracy(model, inputs.budget, device=device)

        pruned, curve = prune_count(accuracy_after, len(activation), self.prune_drop)
        mask.prune(order[:pruned])  # the hook stays: the deployed model keeps these channels at zero
        fit(model, inputs.budget, inputs.finetune, generator=torch.Generator().manual_seed(self.seed), device=device,
            progress=ctx.progress, description=f"fine-pruning: fine-tune with {pruned} channel(s) pruned")
        channels = len(activation)
        metrics = {"fp_pruned": pruned / channels, "fp_channels": float(pruned),
                   "fp_budget_acc_pruned": curve[pruned]}
        better = {"fp_pruned": False, "fp_channels": False, "fp_budget_acc_pruned": True}
        derived = {"fp_layer": module_names(model, [layer])[0], "fp_layer_channels": channels,
                   "fp_pruned_channels": sorted(order[:pruned].tolist()),
                   "fp_budget_acc_curve": [[k, round(a, 4)] for k, a in curve.items()]}
        return DefenseResult(model, metrics, better, derived)
