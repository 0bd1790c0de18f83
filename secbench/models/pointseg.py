"""Point-cloud semantic segmentation networks in pure torch (no torch-geometric, no custom CUDA ops).

Both take blocks ``(B, 9, N)`` (channels :data:`secbench.data.points.CHANNELS`) and return per-point
logits ``(B, num_classes, N)``; they are registered as ``segmenter`` ``dgcnn`` and ``pointnet``.

- ``dgcnn``: DGCNN (Wang et al., arXiv 1801.07829) as PNAL trains it (the torch-geometric segmentation
  example: three dynamic EdgeConv layers whose outputs are concatenated, a per-point linear to
  ``embed`` channels and a per-point MLP head with dropout 0.5); each EdgeConv is a two-layer MLP.
  PNAL's edge channels are (32, 32, 64) with k = 30; the first layer builds its graph on the block's
  xyz, later ones in feature space (DGCNN's dynamic graph).
- ``pointnet``: a small PointNet (Qi et al., arXiv 1612.00593) segmentation net without the input and
  feature transform networks: shared per-point MLPs, a max-pooled global feature appended to every point.
"""

from __future__ import annotations

import torch
from torch import nn

from secbench.registry import register


def _point_mlp(widths: tuple[int, ...], *, dims: int = 1) -> nn.Sequential:
    """Shared 1×1 conv + BN + LeakyReLU(0.2) layers over ``(B, C, N)`` (dims=1) or edge maps ``(B, C, N, k)`` (dims=2)."""
    conv, norm = (nn.Conv1d, nn.BatchNorm1d) if dims == 1 else (nn.Conv2d, nn.BatchNorm2d)
    layers: list[nn.Module] = []
    for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
        layers += [conv(c_in, c_out, 1, bias=False), norm(c_out), nn.LeakyReLU(0.2)]
    return nn.Sequential(*layers)


def knn(features: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``(B, N, k)`` of each point's ``k`` nearest points (itself included) in ``features`` ``(B, C, N)``."""
    squared = features.pow(2).sum(1)
    # -|a-b|^2 = 2ab - |a|^2 - |b|^2; topk of the negated distance gives the nearest
    neg_dist = 2 * features.transpose(1, 2) @ features - squared[:, :, None] - squared[:, None, :]
    return neg_dist.topk(k, dim=-1).indices


def edge_features(features: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
    """EdgeConv's input ``(B, 2C, N, k)``: ``[x_j - x_i, x_i]`` for each point i and each neighbour j."""
    b, c, n = features.shape
    k = neighbours.shape[-1]
    rows = features.transpose(1, 2)  # (B, N, C)
    flat = (neighbours + torch.arange(b, device=features.device)[:, None, None] * n).reshape(-1)
    neighbour = rows.reshape(b * n, c)[flat].view(b, n, k, c)
    centre = rows[:, :, None, :].expand(b, n, k, c)
    return torch.cat([neighbour - centre, centre], dim=-1).permute(0, 3, 1, 2)


class EdgeConv(nn.Module):
    """Dynamic EdgeConv: an MLP on ``[x_j - x_i, x_i]`` over the k-NN graph, max over neighbours."""

    def __init__(self, widths: tuple[int, ...], k: int) -> None:
        super().__init__()
        self.k = k
        self.mlp = _point_mlp((2 * widths[0], *widths[1:]), dims=2)

    def forward(self, features: torch.Tensor, graph_on: torch.Tensor | None = None) -> torch.Tensor:
        """``features`` ``(B, C, N)``; the graph is built on ``graph_on`` (default: ``features``) → ``(B, C', N)``."""
        neighbours = knn(features if graph_on is None else graph_on, min(self.k, features.shape[-1]))
        return self.mlp(edge_features(features, neighbours)).amax(dim=-1)


class DGCNN(nn.Module):
    """Three EdgeConv layers → concat → per-point linear to ``embed`` → MLP head → ``(B, num_classes, N)``."""

    def __init__(self, num_classes: int, *, in_channels: int = 9, edge_channels: tuple[int, int, int] = (32, 32, 64),
                 k: int = 30, embed: int = 1024, head: tuple[int, int] = (256, 128), dropout: float = 0.5) -> None:
        super().__init__()
        c1, c2, c3 = edge_channels
        self.edge1 = EdgeConv((in_channels, c1, c1), k)
        self.edge2 = EdgeConv((c1, c2, c2), k)
        self.edge3 = EdgeConv((c2, c3, c3), k)
        self.embed = _point_mlp((c1 + c2 + c3, embed))
        self.head = nn.Sequential(_point_mlp((embed, *head)), nn.Dropout(dropout),
                                  nn.Conv1d(head[-1], num_classes, 1))

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        x1 = self.edge1(points, graph_on=points[:, :3])  # the first graph is the block's geometry
        x2 = self.edge2(x1)
        x3 = self.edge3(x2)
        return self.head(self.embed(torch.cat([x1, x2, x3], dim=1)))


class PointNet(nn.Module):
    """Per-point MLP → max-pooled global feature appended to each point → MLP head → ``(B, num_classes, N)``."""

    def __init__(self, num_classes: int, *, in_channels: int = 9, local: tuple[int, ...] = (64, 64),
                 global_: tuple[int, ...] = (128, 512), head: tuple[int, int] = (256, 128), dropout: float = 0.3) -> None:
        super().__init__()
        self.local = _point_mlp((in_channels, *local))
        self.global_ = _point_mlp((local[-1], *global_))
        self.head = nn.Sequential(_point_mlp((local[-1] + global_[-1], *head)), nn.Dropout(dropout),
                                  nn.Conv1d(head[-1], num_classes, 1))

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        local = self.local(points)
        pooled = self.global_(local).amax(dim=-1, keepdim=True)
        return self.head(torch.cat([local, pooled.expand(-1, -1, local.shape[-1])], dim=1))


@register("segmenter", "dgcnn")
def dgcnn(*, num_classes: int, k: int = 30, embed: int = 1024) -> DGCNN:
    """DGCNN (arXiv 1801.07829) as PNAL trains it: EdgeConv (32, 32, 64), k-NN graphs, per-point head."""
    return DGCNN(num_classes, k=k, embed=embed)


@register("segmenter", "pointnet")
def pointnet(*, num_classes: int) -> PointNet:
    """A small PointNet (arXiv 1612.00593) segmentation net, without the transform networks."""
    return PointNet(num_classes)
