"""Adversarial Neuron Pruning (Wu & Wang, NeurIPS 2021; code ``csdongxian/ANP_backdoor``): neurons that,
slightly perturbed, flip clean inputs are the backdoor's; learn a mask under adversarial neuron
perturbations on clean data and prune the neurons whose mask ends low. No fine-tuning follows.

Neurons are the output channels of every ``BatchNorm2d`` (the authors' ``NoisyBatchNorm2d``), or, in a model
without BN, of every ``Conv2d`` (:func:`defenses.backdoor.layers.neuron_layers`). Each gets a mask
``m ∈ [0, 1]`` (init 1) and perturbations ``δ, ξ``: its weight is scaled by ``m`` (clean) or ``m + δ``
(perturbed), its bias by 1 or ``1 + ξ``. Per iteration, on a batch of 128 clean images drawn with
replacement (augmented like the victim, the model in train mode, as in the authors' code): ``δ, ξ`` start
uniform in [−ε, ε] and take one signed gradient-ascent step of size ε on the cross-entropy; then SGD (lr 0.2,
momentum 0.9) moves the masks on ``α·CE(clean) + (1 − α)·CE(perturbed)`` with ε = 0.4, α = 0.2, and clips
them to [0, 1]. After ``anp_iterations`` (the authors: 2000) every neuron with ``m ≤ 0.2`` is pruned as the
authors' pruning by threshold does it: its weight (BN γ, or the conv filter) set to zero in the deployed
model, its bias kept. The optimisation runs on a copy, so the deployed model's BN statistics are untouched.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from defenses.backdoor.base import BackdoorDefense, DefenseInputs, DefenseResult
from defenses.backdoor.layers import neuron_layers
from secbench.data.base import ImageSet
from secbench.engine import augment_batch
from secbench.registry import register

if TYPE_CHECKING:
    from secbench.scenarios.base import RunContext


class NeuronPerturbation(nn.Module):
    """The mask ``m`` ``(C,)`` and the perturbations ``δ`` (on the weight) and ``ξ`` (on the bias) of one layer's
    C neurons; ``perturbed`` switches between the clean and the perturbed coefficients."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mask = nn.Parameter(torch.ones(channels))
        self.noise = nn.Parameter(torch.zeros(channels))
        self.noise_bias = nn.Parameter(torch.zeros(channels))
        self.perturbed = False

    def coefficient(self, of: str) -> torch.Tensor:
        """The per-neuron factor of the layer's ``weight`` or ``bias``: ``(C,)``."""
        if of == "weight":
            return self.mask + self.noise if self.perturbed else self.mask
        return 1 + self.noise_bias if self.perturbed else torch.ones_like(self.noise_bias)


class _Scaled(nn.Module):
    """A parametrization: a per-output-channel parameter (``(C, ...)``) times its neuron's coefficient."""

    def __init__(self, neurons: NeuronPerturbation, of: str) -> None:
        super().__init__()
        self.neurons, self.of = neurons, of

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        return value * self.neurons.coefficient(self.of).view((-1,) + (1,) * (value.ndim - 1))


def attach(model: nn.Module) -> list[tuple[str, NeuronPerturbation]]:
    """Put a :class:`NeuronPerturbation` on every neuron layer of ``model`` (in place), named by layer."""
    attached = []
    for name, layer in neuron_layers(model):
        neurons = NeuronPerturbation(layer.weight.shape[0]).to(layer.weight.device)
        for of in ("weight", "bias"):
            if getattr(layer, of, None) is not None:
                parametrize.register_parametrization(layer, of, _Scaled(neurons, of))
        attached.append((name, neurons))
    return attached


def optimize_masks(model: nn.Module, data: ImageSet, *, iterations: int, eps: float, alpha: float, lr: float,
                   augment: tuple[str, ...], seed: int, device: torch.device, batch_size: int = 128) -> dict[str, torch.Tensor]:
    """ANP's mask optimisation on a copy of ``model`` over the clean ``data``: each neuron layer's final mask
    ``(C,)`` in [0, 1], by layer name."""
    net = copy.deepcopy(model).to(device).train()  # train mode: batch statistics, as in the authors' loop
    net.requires_grad_(False)
    layers = attach(net)
    masks = [n.mask for _, n in layers]
    noises = [p for _, n in layers for p in (n.noise, n.noise_bias)]
    mask_opt = torch.optim.SGD(masks, lr=lr, momentum=0.9)
    noise_opt = torch.optim.SGD(noises, lr=eps)  # one step of size ε (the authors: ε / steps, with 1 step)
    generator = torch.Generator().manual_seed(seed)

    def perturb(on: bool) -> None:
        for _, n in layers:
            n.perturbed = on

    for _ in range(iterations):
        index = torch.randint(len(data), (batch_size,), generator=generator)
        x, y = data.batch(index)
        x = augment_batch(x, augment, generator).to(device).contiguous(memory_format=torch.channels_last)
        y = y.to(device)
        # step 1: the adversarial neuron perturbation, one signed ascent step from a random start
        with torch.no_grad():
            for p in noises:
                p.copy_(torch.rand(p.shape, generator=generator).mul_(2 * eps).sub_(eps))
        perturb(True)
        noise_opt.zero_grad(set_to_none=True)
        (-F.cross_entropy(net(x), y)).backward()
        for p in noises:
            p.grad = p.grad.sign()
        noise_opt.step()
        # step 2: masks that keep clean and perturbed predictions right
        mask_opt.zero_grad(set_to_none=True)
        robust = F.cross_entropy(net(x), y)
        perturb(False)
        natural = F.cross_entropy(net(x), y)
        (alpha * natural + (1 - alpha) * robust).backward()
        mask_opt.step()
        with torch.no_grad():
            for m in masks:
                m.clamp_(0.0, 1.0)
    return {name: n.mask.detach().cpu() for name, n in layers}


@torch.no_grad()
def prune_neurons(model: nn.Module, masks: dict[str, torch.Tensor], threshold: float) -> int:
    """Zero the weight of every neuron of ``model`` whose mask is ``≤ threshold`` (biases kept); returns how many."""
    layers = dict(model.named_modules())
    count = 0
    for name, mask in masks.items():
        pruned = (mask <= threshold).to(layers[name].weight.device)
        layers[name].weight[pruned] = 0.0
        count += int(pruned.sum())
    return count


@register("defense", "anp")
@dataclass(kw_only=True)
class AdversarialNeuronPruning(BackdoorDefense):
    """ANP (NeurIPS 2021): masks learnt under adversarial neuron perturbation, low-mask neurons pruned.

    Args:
        anp_iterations: mask-optimisation iterations of 128 clean images (the authors: 2000).
        eps: the perturbation budget ε (0.4).
        alpha: the weight of the clean loss (0.2).
        mask_lr: the masks' SGD learning rate (0.2).
        threshold: neurons with a mask at or below it are pruned (0.2).
    """

    name: ClassVar[str] = "anp"
    anp_iterations: int = 2000
    eps: float = 0.4
    alpha: float = 0.2
    mask_lr: float = 0.2
    threshold: float = 0.2

    def run(self, inputs: DefenseInputs, ctx: RunContext) -> DefenseResult:
        model = inputs.model.to(ctx.device)
        masks = optimize_masks(model, inputs.budget, iterations=self.anp_iterations, eps=self.eps, alpha=self.alpha,
                               lr=self.mask_lr, augment=inputs.finetune.augment, seed=self.seed, device=ctx.device)
        pruned = prune_neurons(model, masks, self.threshold)
        every = torch.cat(list(masks.values()))
        metrics = {"anp_pruned": pruned / len(every), "anp_neurons": float(pruned), "anp_mask_mean": every.mean().item()}
        better = {"anp_pruned": False, "anp_neurons": False, "anp_mask_mean": True}
        lowest = torch.argsort(every)[:10]
        names = [(name, i) for name, mask in masks.items() for i in range(len(mask))]
        derived = {"anp_layers": len(masks), "anp_total_neurons": len(every),
                   "anp_lowest": [[names[j][0], names[j][1], round(every[j].item(), 4)] for j in lowest.tolist()],
                   "anp_pruned_per_layer": {name: int((mask <= self.threshold).sum()) for name, mask in masks.items()}}
        return DefenseResult(model.eval(), metrics, better, derived)
