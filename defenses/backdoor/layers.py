"""Where the model-repair defenses act: the pooled last conv block (Fine-Pruning), the last blocks of the
trunk (NAD), the per-channel neurons (ANP), found generically by the model surface and module types, and
a context manager that records module outputs.

Every secbench model is a :class:`~secbench.models.layers.ConvClassifier`: ``stages`` is its trunk (an
``nn.Sequential`` of blocks) and ``last_conv`` its last entry, whose ``(N, C, h, w)`` output is pooled into
the features. A model without that surface falls back on module order (the last ``nn.Conv2d``) where one
exists; otherwise the defense stops with a one-line error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from secbench.errors import SecbenchError


def last_conv_module(model: nn.Module) -> nn.Module:
    """The module whose ``(N, C, h, w)`` output is pooled: ``model.last_conv``, else the last ``nn.Conv2d``."""
    module = getattr(model, "last_conv", None)
    if isinstance(module, nn.Module):
        return module
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise SecbenchError(f"{type(model).__name__} has no convolution layer to prune (fine-pruning needs one)")
    return convs[-1]


def trunk_blocks(model: nn.Module, count: int) -> list[nn.Module]:
    """The last ``count`` entries of ``model.stages`` in forward order (for preact-resnet18 and 3:
    ``layer2``-``layer4``, the blocks BackdoorBench's NAD distils; for cnn-s its last three conv blocks)."""
    stages = getattr(model, "stages", None)
    if not isinstance(stages, nn.Sequential) or len(stages) < count:
        raise SecbenchError(f"{type(model).__name__} has no trunk of {count} blocks (model.stages) to distil")
    return list(stages)[-count:]


def neuron_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers whose output channels are ANP's neurons, ``(name, module)`` in module order: every
    ``BatchNorm2d`` (as in the authors' code), or, in a model without one, every ``Conv2d``."""
    named = list(model.named_modules())
    norms = [(n, m) for n, m in named if isinstance(m, nn.BatchNorm2d) and m.affine]
    if norms:
        return norms
    convs = [(n, m) for n, m in named if isinstance(m, nn.Conv2d)]
    if not convs:
        raise SecbenchError(f"{type(model).__name__} has neither BatchNorm2d nor Conv2d layers to mask (anp needs one)")
    return convs


def module_names(model: nn.Module, modules: Sequence[nn.Module]) -> list[str]:
    """The qualified names of ``modules`` inside ``model`` (for the record)."""
    names = {id(m): n for n, m in model.named_modules()}
    return [names.get(id(m), type(m).__name__) for m in modules]


@contextmanager
def recording(modules: Sequence[nn.Module]) -> Iterator[list[torch.Tensor | None]]:
    """Within the block, after each forward pass, entry i of the yielded list holds the latest output of
    ``modules[i]`` (None before the first); the hooks are removed on exit. Outputs keep their graph (NAD
    backpropagates through them)."""
    outputs: list[torch.Tensor | None] = [None] * len(modules)

    def keep(i: int) -> Callable[[nn.Module, tuple, torch.Tensor], None]:  # one closure per position: a plain lambda in the loop would capture the last i
        def hook(_module: nn.Module, _args: tuple, out: torch.Tensor) -> None:
            outputs[i] = out
        return hook

    handles = [m.register_forward_hook(keep(i)) for i, m in enumerate(modules)]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()
