"""An embedder whose residual is bounded by construction, so that invisibility is guaranteed.

The official H (a UNet with a sigmoid) may write anything; only its fidelity loss keeps the mark
faint, and a short CPU schedule ends either with no mark or with a visible one (``train.py``).
:class:`BoundedResidual` instead writes ``cover + ε · s(cover) · tanh(h)`` where ``h`` is the
UNet's raw output: with ``ε = 10^(-min_psnr / 20)`` and a spread ``s`` of unit RMS per image, the
squared error of every image is at most ``ε²``, so its PSNR (peak 1) is at least ``min_psnr``
whatever H learns, and the losses can be spent on decodability. ``start_psnr`` is a curriculum:
training (:func:`~secbench.hiding.train_hiding`) moves the bound from it to ``min_psnr`` step by
step (linearly in dB), so that R first learns a clear mark that is then squeezed out of sight;
the trained embedder, and any loaded from a cache, holds ``min_psnr``. ``edge_focus`` moves the allowed
energy towards the cover's structure (a JND-style mask: changes on edges are the least visible
and are where a structure mark lives); 0 spreads it uniformly (the logo baseline).
"""

from __future__ import annotations

import torch
from torch import nn

from secbench.imageops import EDGE_THRESHOLD, soft_edges

RESIDUALS = ("bounded", "free")  # free: the official sigmoid output, kept by the paper preset


class BoundedResidual(nn.Module):
    """Wraps ``net`` ``(N, 3 + k, H, W) → (N, 3, H, W)`` raw; input is the cover ⊕ the hidden mark.

    Shape: ``(N, 3 + k, H, W)`` with the cover in [0, 1] first → ``(N, 3, H, W)``, each image within
    ``bound · spread`` of its cover pixel by pixel (not clamped: an API rounds and clamps its answers).
    """

    def __init__(self, net: nn.Module, *, min_psnr: float, start_psnr: float | None = None,
                 edge_focus: float = 0.0, threshold: float = EDGE_THRESHOLD) -> None:
        super().__init__()
        if not 0 <= edge_focus < 1:
            raise ValueError(f"edge_focus is a fraction in [0, 1), got {edge_focus}")
        self.net, self.min_psnr, self.edge_focus, self.threshold = net, min_psnr, edge_focus, threshold
        self.start_psnr = min_psnr if start_psnr is None else start_psnr
        self.anneal(1.0)

    def anneal(self, progress: float) -> None:
        """Set the bound for a point of training, ``progress`` in [0, 1] (1: the final ``min_psnr``)."""
        psnr = self.start_psnr + (self.min_psnr - self.start_psnr) * min(1.0, max(0.0, progress))
        self.bound = 10 ** (-psnr / 20)

    def spread(self, covers: torch.Tensor) -> torch.Tensor:
        """Per-pixel share of the residual budget ``(N, 1, H, W)``, RMS 1 over each image."""
        share = (1 - self.edge_focus) + self.edge_focus * soft_edges(covers.detach(), self.threshold)
        return share / share.square().mean((1, 2, 3), keepdim=True).sqrt()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        covers = x[:, :3]
        return covers + self.bound * self.spread(covers) * torch.tanh(self.net(x))
