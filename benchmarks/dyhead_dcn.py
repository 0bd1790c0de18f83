"""DyHead's deformable conv on CPU: torchvision's kernel against secbench's ``grid_sample`` form, side by side.

Times forward + backward, alternating the two implementations so that both see the same machine load:
one DCN at the ``quick`` detector's finest level (batch 16, 64 channels, 16×16 P3 at 128 px), then one
training step of the ``quick`` ATSS detector with DyHead (2 blocks). Prints the medians, their ratio and
the largest difference between the two steps' losses and gradients (float32).

    python benchmarks/dyhead_dcn.py [--repeats 5] [--backbone resnet18] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torchvision.ops import deform_conv2d

import secbench.models.dyhead as dyhead
from secbench.data.detection import load_detection
from secbench.models.detector import atss_loss
from secbench.scenarios.detection import DetectionConfig


def torchvision_dcn(x, offset, mask, weight, bias, stride=1, padding=1):
    return deform_conv2d(x, offset, weight, bias, stride=stride, padding=padding, mask=mask)


IMPLEMENTATIONS = {"torchvision": torchvision_dcn, "grid_sample": dyhead.modulated_deform_conv2d}


def median_times(step: Callable[[], object], repeats: int) -> dict[str, float]:
    """Median seconds of ``step()`` with each implementation patched into DyHead, alternating runs."""
    times: dict[str, list[float]] = {name: [] for name in IMPLEMENTATIONS}
    for _ in range(repeats + 1):  # the first round warms up
        for name, fn in IMPLEMENTATIONS.items():
            dyhead.modulated_deform_conv2d = fn
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    dyhead.modulated_deform_conv2d = IMPLEMENTATIONS["grid_sample"]
    return {name: statistics.median(t[1:]) for name, t in times.items()}


def report(what: str, medians: dict[str, float]) -> None:
    tv, gs = medians["torchvision"], medians["grid_sample"]
    print(f"{what}: torchvision {tv * 1e3:.0f} ms, grid_sample {gs * 1e3:.0f} ms, ratio {tv / gs:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)

    x = torch.randn(16, 64, 16, 16, generator=g, requires_grad=True)
    offset = torch.randn(16, 18, 16, 16, generator=g, requires_grad=True)
    mask = torch.rand(16, 9, 16, 16, generator=g, requires_grad=True)
    weight = torch.randn(64, 64, 3, 3, generator=g, requires_grad=True)
    bias = torch.zeros(64, requires_grad=True)
    report("one DCN 16x64x16x16, fwd+bwd",
           median_times(lambda: dyhead.modulated_deform_conv2d(x, offset, mask, weight, bias).sum().backward(),
                        args.repeats))

    data = load_detection("objects", seed=0, n_train=16, n_test=1, img_size=128)
    images, labels = data.train.images.float() / 255, data.train.labels
    model = DetectionConfig(backbone=args.backbone, head="dyhead").detector(data.num_classes)

    def train_step() -> tuple[float, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        loss = atss_loss(model(images), labels)
        loss.backward()
        return loss.item(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    report(f"quick ATSS + DyHead (2 blocks) on {args.backbone}, one step of 16",
           median_times(train_step, args.repeats))
    results = {}
    for name, fn in IMPLEMENTATIONS.items():
        dyhead.modulated_deform_conv2d = fn
        results[name] = train_step()
    dyhead.modulated_deform_conv2d = IMPLEMENTATIONS["grid_sample"]
    (loss_a, grads_a), (loss_b, grads_b) = results.values()
    grad_gap = max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-12)) for a, b in zip(grads_a, grads_b, strict=True))
    print(f"same step: loss {loss_a:.6f} vs {loss_b:.6f}; largest gradient difference {grad_gap:.1e} of its "
          f"tensor's max (float32)")


if __name__ == "__main__":
    main()
