"""Model zoo cost: params and MACs of every registered model, and forward throughput against torchvision.

Part 1 counts params and MACs (FlopCounterMode ÷ 2) of every model at 224×224 on the meta device
and prints the total time (target: under 60 s). Part 2 times eval-mode forward passes, batch 64, at
32×32 and 224×224, and prints each model's images/s next to torchvision's unmodified
``mobilenet_v3_small`` measured right after it, as a ratio.

    python benchmarks/zoo.py [--models micronet-m0,cswin-t] [--sizes 32,224] [--batch 64]
"""

from __future__ import annotations

import argparse
import time

import torch
import torchvision

from secbench import registry
from secbench.zoo import card_rows


def images_per_s(model: torch.nn.Module, size: int, batch: int, min_s: float = 1.0) -> float:
    """Forward passes until ``min_s`` has elapsed (at least one after a warm-up pass)."""
    x = torch.rand(batch, 3, size, size)
    with torch.inference_mode():
        model(x)
        done, start = 0, time.perf_counter()
        while done == 0 or time.perf_counter() - start < min_s:
            model(x)
            done += 1
    return done * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="comma-separated names (default: every registered model)")
    parser.add_argument("--sizes", default="32,224")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    names = args.models.split(",") if args.models else registry.list_names("model")

    start = time.perf_counter()
    rows = {r["model"]: r for r in card_rows(224)}
    print(f"params and MACs of {len(rows)} models at 224x224: {time.perf_counter() - start:.1f} s")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}")
    for size in (int(s) for s in args.sizes.split(",")):
        # The reference runs beside every model, so each ratio compares two passes taken moments apart.
        tv = torchvision.models.mobilenet_v3_small(num_classes=10).eval()
        print(f"\n{size}x{size}")
        print(f"{'model':20} {'params M':>9} {'MACs M @224':>12} {'img/s':>9} {'tv-mnv3s':>9} {'ratio':>7}")
        for name in names:
            model = registry.create_model(name, num_classes=10, img_size=size).eval()
            speed, reference = images_per_s(model, size, args.batch), images_per_s(tv, size, args.batch)
            row = rows[name]
            print(f"{name:20} {row['params_m']:9.2f} {row['macs_m']:12.1f} {speed:9.1f} {reference:9.1f} "
                  f"{speed / reference:6.2f}x")


if __name__ == "__main__":
    main()
