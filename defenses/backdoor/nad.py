"""Neural Attention Distillation (Li, Lyu, Koren, Lyu, Li, Ma, ICLR 2021; code ``bboylyg/NAD``): fine-tune
a teacher on clean data, then train the backdoored model (the student) to match the teacher's attention.

Teacher: a copy of the backdoored model fine-tuned on the defender's clean budget for ``nad_teacher_epochs``
at peak ``nad_teacher_lr``. Student: the backdoored model, trained ``nad_epochs`` at peak ``nad_lr`` on the
same budget with ``CE + Σ_i β_i · AT(student_i, teacher_i)`` over the outputs of the last three trunk blocks
(:func:`defenses.backdoor.layers.trunk_blocks`: ``layer2``-``layer4`` of preact-resnet18, BackdoorBench's
β = 500 / 1000 / 1000; for cnn-s its last three conv blocks, 32-64-128 channels, the same β). Both see the
same augmented batch; the teacher stays frozen in eval mode. Attention map of an ``(N, C, H, W)``
activation: ``mean_c |a|^p`` (p = 2), flattened and divided by its L2 norm (+1e-6); AT is the mean squared
difference of the two maps, as in the authors' and BackdoorBench's code (the paper writes the L2 distance;
the code's squared mean is what their β values were tuned for). Both trainings use the shared ``finetune``
recipe (SGD, the victim's augmentation and batch size, a cosine schedule as in BackdoorBench's NAD); the
authors' code instead keeps 0.1 for 2 epochs and then 0.01, for the teacher and the student alike.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from defenses.backdoor.base import BackdoorDefense, DefenseInputs, DefenseResult
from defenses.backdoor.layers import module_names, recording, trunk_blocks
from secbench.engine import fit
from secbench.errors import SecbenchError
from secbench.registry import register

if TYPE_CHECKING:
    from secbench.scenarios.base import RunContext


def attention_map(activation: torch.Tensor, p: float = 2.0, eps: float = 1e-6) -> torch.Tensor:
    """``(N, C, H, W)`` → ``(N, H·W)``: the channel mean of ``|a|^p`` per position, divided by its L2 norm + ``eps``."""
    if activation.ndim != 4:
        raise SecbenchError(f"nad needs (N, C, H, W) block outputs, got shape {tuple(activation.shape)}")
    am = activation.float().abs().pow(p).mean(1).flatten(1)
    return am / (am.norm(dim=1, keepdim=True) + eps)


def attention_loss(student: torch.Tensor, teacher: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Mean squared difference of the two activations' attention maps (the teacher's carries no gradient)."""
    return F.mse_loss(attention_map(student, p), attention_map(teacher.detach(), p))


class Distillation(nn.Module):
    """The student, plus the frozen teacher run on the same input: ``forward(x)`` returns the student's
    logits and leaves ``Σ β_i · AT`` over the paired blocks in ``at_loss``. The teacher is held outside the
    module tree, so that training, BN recalibration and the optimiser see the student only."""

    def __init__(self, student: nn.Module, teacher: nn.Module, *, blocks: int, betas: Sequence[float], p: float) -> None:
        super().__init__()
        self.student = student
        self._teacher = (teacher.eval().requires_grad_(False),)  # a tuple: not registered as a submodule
        self.student_blocks, self.teacher_blocks = trunk_blocks(student, blocks), trunk_blocks(teacher, blocks)
        self.betas, self.p = tuple(betas), p
        self.at_loss = torch.zeros(())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), recording(self.teacher_blocks) as taught:
            self._teacher[0](x)
        with recording(self.student_blocks) as learned:
            logits = self.student(x)
        self.at_loss = sum((beta * attention_loss(s, t, self.p)
                            for beta, s, t in zip(self.betas, learned, taught, strict=True)), torch.zeros((), device=x.device))
        return logits


@register("defense", "nad")
@dataclass(kw_only=True)
class NeuralAttentionDistillation(BackdoorDefense):
    """NAD (ICLR 2021): attention distillation from a clean-fine-tuned teacher into the backdoored model.

    Args:
        nad_teacher_epochs: the teacher's fine-tuning epochs on the clean data (BackdoorBench: 10).
        nad_teacher_lr: the teacher's peak learning rate (the authors: 0.1).
        nad_epochs: the student's distillation epochs (the authors: 20).
        nad_lr: the student's peak learning rate (the authors: 0.1).
        betas: attention-loss weights of the last blocks, shallowest first (BackdoorBench: 500, 1000, 1000).
        p: the power of the attention map (2).
    """

    name: ClassVar[str] = "nad"
    nad_teacher_epochs: int = 10
    nad_teacher_lr: float = 0.1
    nad_epochs: int = 20
    nad_lr: float = 0.1
    betas: tuple[float, ...] = (500.0, 1000.0, 1000.0)
    p: float = 2.0

    def run(self, inputs: DefenseInputs, ctx: RunContext) -> DefenseResult:
        teacher = copy.deepcopy(inputs.model)
        fit(teacher, inputs.budget, replace(inputs.finetune, epochs=self.nad_teacher_epochs, lr=self.nad_teacher_lr),
            generator=torch.Generator().manual_seed(self.seed), device=ctx.device, progress=ctx.progress,
            description="nad: fine-tune the teacher")
        student = Distillation(inputs.model, teacher, blocks=len(self.betas), betas=self.betas, p=self.p)
        ce = inputs.finetune.label_smoothing
        history = fit(student, inputs.budget, replace(inputs.finetune, epochs=self.nad_epochs, lr=self.nad_lr),
                      generator=torch.Generator().manual_seed(self.seed + 1), device=ctx.device, progress=ctx.progress,
                      description="nad: attention distillation",
                      loss_fn=lambda out, y: F.cross_entropy(out, y, label_smoothing=ce) + student.at_loss)
        derived = {"nad_blocks": module_names(inputs.model, student.student_blocks), "nad_betas": list(self.betas),
                   "nad_loss": [round(v, 4) for v in history["loss"]]}
        return DefenseResult(inputs.model.eval(), {}, {}, derived)
