"""CNN-S: a small, fast VGG-style CNN for CPU-sized experiments (secbench's own design, no paper).

Four blocks ``conv3x3 → (2×2 max-pool) → BatchNorm → ReLU`` with widths 16-32-64-128 (no pool in the
last), global average pooling and one linear layer: 3.98M MACs and 98,970 parameters for one 32×32
image and 10 classes. It is the default victim for smoke and quick runs. With SGD (batch 128) on two
CPU threads it reached 0.99 test accuracy on ``digits`` in 6 s and 0.97 on ``shapes`` in 20 s (4 epochs).

Why this shape: on CPU a small CNN's cost is dominated by full-resolution activations, so the first
block is narrow (16 channels) and the width doubles each time the map halves, spending about the same
1.2M MACs in each of the last three blocks. Training throughput on two threads (batch 128, SGD,
medians on a shared 2-core VM): about 1,800 img/s, and about 2,500 img/s (+40%) with the model and
the batches in ``torch.channels_last``. The model does not switch itself to channels_last (its conv
weights would then be non-contiguous, which safetensors refuses to save): ``secbench.engine`` converts
model and batches, and checkpoints save ``.contiguous()`` copies.
"""

from __future__ import annotations

from torch import nn

from secbench.errors import SecbenchError
from secbench.models.layers import ConvClassifier
from secbench.models.recipe import Recipe, add_recipe
from secbench.registry import register

__all__ = ["CNN", "cnn_s"]


def _conv_block(in_channels: int, out_channels: int, *, pool: bool) -> nn.Sequential:
    """``conv3x3`` (→ 2×2 max-pool) → BN → ReLU: ``(N, C_in, H, W)`` → ``(N, C_out, H, W)``, or ``H/2, W/2`` with ``pool``."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)  # BN supplies the bias
    # Pooling straight after the conv (as airbench does) lets BN and ReLU run on a quarter of the values:
    # measured 25% faster training than conv-BN-ReLU-pool, and on shapes more accurate after 3 epochs
    # (0.945 vs 0.82-0.88 test accuracy over 3 seeds).
    pooling = [nn.MaxPool2d(2)] if pool else []
    return nn.Sequential(conv, *pooling, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class CNN(ConvClassifier):
    """Plain VGG-style CNN: one ``conv → (max-pool) → BN → ReLU`` block per width.

    Args:
        widths: output channels of each block; every block but the last halves the resolution, so
            the input side must be at least ``2 ** (len(widths) - 1)`` pixels.
        num_classes: number of logits.
        mean, std: per-channel statistics for the in-model :class:`~secbench.models.layers.Normalize`.

    ``last_conv`` is the last block (``conv → BN → ReLU``, no pool); its ``widths[-1]`` post-ReLU channels are
    pooled into the features, so ``features`` has ``D = widths[-1]``.

    Shape: ``(N, 3, H, W)`` float in [0, 1] → ``(N, num_classes)`` logits.
    """

    def __init__(
        self,
        widths: tuple[int, ...],
        *,
        num_classes: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
    ) -> None:
        channels = (3, *widths)
        stages = nn.Sequential(
            *(
                _conv_block(c_in, c_out, pool=i < len(widths) - 1)
                for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:], strict=True))
            )
        )
        super().__init__(stages, nn.Linear(widths[-1], num_classes), mean=mean, std=std)


@register("model", "cnn-s")
def cnn_s(
    *,
    num_classes: int,
    img_size: int = 32,
    mean: tuple[float, ...] = (0.5, 0.5, 0.5),
    std: tuple[float, ...] = (0.25, 0.25, 0.25),
) -> CNN:
    """Small fast CNN (widths 16-32-64-128, ~4.0M MACs and 98,970 params at 32×32, 10 classes).

    ``img_size`` must be at least 8 (three 2× max-pools); global pooling handles any larger size.
    """
    if img_size < 8:
        raise SecbenchError(f"cnn-s needs img_size >= 8 (three 2x max-pools), got {img_size}")
    return CNN((16, 32, 64, 128), num_classes=num_classes, mean=mean, std=std)

# secbench's own: a one-cycle SGD run, ~1 min on 2 cores, 0.93 on shapes (README, results).
add_recipe(Recipe("sgd", lr=0.05, weight_decay=5e-4, schedule="triangle", warmup=0.2, train_images=25_000,
                  source="secbench's CPU recipe: Nesterov SGD, linear warm-up over 20% then linear decay"), "cnn-s")
