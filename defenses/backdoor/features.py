"""Penultimate-layer activations of a classifier: what the training-data filters (Spectral Signatures,
Activation Clustering) inspect.

Every secbench model exposes ``features(x)``, the input of its final linear ``classifier`` (for a
:class:`~secbench.models.layers.ConvClassifier` the pooled last-conv output after ``pre_logits``).
"""

from __future__ import annotations

import torch
from torch import nn

from secbench.errors import SecbenchError


@torch.no_grad()
def penultimate(model: nn.Module, images: torch.Tensor, *, device: torch.device, batch_size: int = 512) -> torch.Tensor:
    """``model.features`` of ``images`` (uint8 ``(N, C, H, W)``, or float in [0, 1]) in eval mode, in
    batches, no autocast (the filters' SVD and ICA want float32): ``(N, D)`` on the CPU. ``model`` is on
    ``device`` already, as everything :func:`secbench.engine.predict` scores."""
    features = getattr(model, "features", None)
    if not callable(features):
        raise SecbenchError(f"{type(model).__name__} exposes no features(x); the data-filtering defenses need one")
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device)
        x = (x.float().div_(255) if x.dtype == torch.uint8 else x).contiguous(memory_format=torch.channels_last)
        out.append(features(x).float().cpu())
    return torch.cat(out)
