"""The few figure types secbench writes (PNG, matplotlib's non-interactive backend)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def line_plot(x: Sequence[float], curves: Mapping[str, Sequence[float]], path: Path, *, xlabel: str, ylabel: str,
              title: str) -> Path:
    """One line per entry of ``curves`` over ``x``; y is assumed to be a fraction in [0, 1]."""
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for label, y in curves.items():
        ax.plot(x, y, marker="o", label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title, ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def heatmap(values: Sequence[Sequence[float]], rows: Sequence[str], cols: Sequence[str], path: Path, *,
            title: str, label: str = "accuracy") -> Path:
    """A rows × cols grid of values in [0, 1], each cell annotated."""
    fig, ax = plt.subplots(figsize=(1.2 + 0.8 * len(cols), 0.9 + 0.45 * len(rows)), dpi=120)
    image = ax.imshow(values, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < 0.6 else "black")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label=label)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def scatter_plot(points: Sequence[Sequence[float]], labels: Sequence[int], names: Sequence[str], path: Path, *,
                 title: str) -> Path:
    """2-D points ``(N, 2)`` coloured by class index ``labels`` (e.g. a t-SNE of features), one legend entry
    per class name."""
    fig, ax = plt.subplots(figsize=(5, 4.5), dpi=120)
    colours = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    for k, name in enumerate(names):
        xy = [p for p, y in zip(points, labels, strict=True) if y == k]
        if xy:
            ax.scatter([p[0] for p in xy], [p[1] for p in xy], s=4, color=colours(k % colours.N), label=name)
    ax.set(xticks=[], yticks=[])
    ax.set_title(title, fontsize=9)
    if len(names) <= 20:
        ax.legend(fontsize=7, markerscale=3, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def image_rows(rows: Mapping[str, Any], path: Path, *, title: str) -> Path:
    """A grid of images, one labelled row per entry of ``rows``: torch float ``(N, 3, H, W)`` in [0, 1],
    the same ``N`` in every row (e.g. clean, poisoned and amplified residual of the same N images)."""
    n = len(next(iter(rows.values())))
    fig, axes = plt.subplots(len(rows), n, figsize=(0.3 + 1.1 * n, 0.5 + 1.1 * len(rows)), dpi=120, squeeze=False)
    for r, (label, images) in enumerate(rows.items()):
        pixels = images.detach().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
        for c in range(n):
            ax = axes[r][c]
            ax.imshow(pixels[c], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(label, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


IGNORED_COLOUR = (0.8, 0.8, 0.8)


def point_panels(xyz: Any, panels: Mapping[str, Any], classes: Sequence[str], path: Path, *, title: str) -> Path:
    """One 3-D scatter per entry of ``panels`` (per-point class ids, -1 drawn grey) of the points ``xyz``
    ``(P, 3)``, in a shared categorical palette with one legend for the classes."""
    tab20 = plt.get_cmap("tab20").colors
    palette = tab20[0::2] + tab20[1::2]  # ten saturated colours first, then their light twins
    fig = plt.figure(figsize=(4 * len(panels), 4.2), dpi=110)
    for i, (name, labels) in enumerate(panels.items()):
        labels = np.asarray(labels)
        colours = np.array([palette[c % len(palette)] if c >= 0 else IGNORED_COLOUR for c in labels])
        ax = fig.add_subplot(1, len(panels), i + 1, projection="3d")
        ax.scatter(xyz[:, 0], xyz[:, 1], xyz[:, 2], c=colours, s=1.5, depthshade=False, linewidths=0)
        ax.view_init(elev=60, azim=-60)
        ax.set_box_aspect(np.ptp(xyz, axis=0) + 1e-6)  # metres on every axis
        ax.set_title(name, fontsize=10)
        ax.set_axis_off()
    handles = [plt.Line2D([], [], marker="o", ls="", color=palette[c % len(palette)], label=name)
               for c, name in enumerate(classes)]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(classes), 11), fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def detection_panels(images: Any, truth: Sequence[tuple[Any, Any]], predicted: Sequence[tuple[Any, Any, Any]],
                     classes: Sequence[str], path: Path, *, title: str, min_score: float = 0.3) -> Path:
    """Two rows over the same images: ground-truth boxes (top) and predictions with score ≥ ``min_score``
    (bottom, labelled with class and score). ``images``: float ``(N, 3, H, W)`` in [0, 1]; ``truth``: per image
    ``(boxes (G, 4), classes (G,))``; ``predicted``: per image ``(boxes (D, 4), scores (D,), classes (D,))``;
    boxes ``(x1, y1, x2, y2)`` in pixels. One colour per class in both rows."""
    from matplotlib import patheffects
    from matplotlib.patches import Rectangle

    halo = [patheffects.withStroke(linewidth=2.4, foreground="white")]  # boxes stay visible on any colour
    palette = plt.get_cmap("tab10").colors
    pixels = images.detach().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    n = len(pixels)
    fig, axes = plt.subplots(2, n, figsize=(0.3 + 1.9 * n, 4.2), dpi=120, squeeze=False)
    for c in range(n):
        rows = [(np.asarray(truth[c][0]), None, np.asarray(truth[c][1]))]
        boxes, scores, labels = (np.asarray(v) for v in predicted[c])
        keep = scores >= min_score
        rows.append((boxes[keep], scores[keep], labels[keep]))
        for r, (b, s, k) in enumerate(rows):
            ax = axes[r][c]
            ax.imshow(pixels[c], interpolation="nearest")
            for j, box in enumerate(b.reshape(-1, 4)):
                colour = palette[int(k[j]) % len(palette)]
                ax.add_patch(Rectangle((box[0] - 0.5, box[1] - 0.5), box[2] - box[0], box[3] - box[1], fill=False,
                                       lw=1.0, edgecolor=colour, path_effects=halo))
                text = classes[int(k[j])] if s is None else f"{classes[int(k[j])]} {s[j]:.2f}"
                ax.text(box[0], box[1] - 1, text, fontsize=5, color=colour, va="bottom", path_effects=halo)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0][c].set_title(f"{len(rows[0][0])} objects", fontsize=7)
    axes[0][0].set_ylabel("ground truth", fontsize=8)
    axes[1][0].set_ylabel(f"predicted (score ≥ {min_score:g})", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
