"""Model zoo cost: params and MACs of every registered model, forward and training throughput.

Part 1 counts params and MACs (FlopCounterMode ÷ 2) of every model at 224×224 on the meta device
and prints the total time (target: under 60 s). Part 2 times eval-mode forward passes, batch 64, at
32×32 and 224×224, and prints each model's images/s next to torchvision's unmodified
``mobilenet_v3_small`` measured right after it, as a ratio. Part 3 (``--train``) times training steps
at 32×32 (forward, backward and the model's recipe optimiser, batch 128, channels_last as the engine
trains) beside ``cnn-s`` measured right after each model, and with ``--profile`` prints, for every model
below 100 training images/s, the operators its training step spends its time in.

    python benchmarks/zoo.py [--models micronet-m0,cswin-t] [--sizes 32,224] [--batch 64] [--train] [--profile]
"""

from __future__ import annotations

import argparse
import time

import torch
import torchvision

from secbench import registry
from secbench.engine import TrainConfig, make_optimizer, prepare_model, to_model
from secbench.models.recipe import recipe_for
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


def train_step(name: str, batch: int = 128, size: int = 32):
    """A closure running one training step of ``name`` with its recipe's optimiser on a fixed batch."""
    model = prepare_model(registry.create_model(name, num_classes=10, img_size=size), torch.device("cpu")).train()
    recipe = recipe_for(name)
    optimizer = make_optimizer(model, TrainConfig(lr=recipe.lr, optimizer=recipe.optimizer, weight_decay=recipe.weight_decay))
    x, y = to_model(torch.rand(batch, 3, size, size), torch.device("cpu")), torch.randint(0, 10, (batch,))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    return step


def train_images_per_s(name: str, batch: int = 128, min_s: float = 3.0) -> float:
    step = train_step(name, batch)
    step()  # warm-up: allocations, first-call dispatch
    done, start = 0, time.perf_counter()
    while done < 2 or time.perf_counter() - start < min_s:
        step()
        done += 1
    return done * batch / (time.perf_counter() - start)


def profile(name: str, batch: int = 128, rows: int = 8) -> None:
    """The operators one training step of ``name`` spends its CPU time in (self time, three steps)."""
    step = train_step(name, batch)
    step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="comma-separated names (default: every registered model)")
    parser.add_argument("--sizes", default="32,224")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--train", action="store_true", help="also time training steps at 32x32 beside cnn-s")
    parser.add_argument("--profile", action="store_true", help="with --train: profile models below 100 img/s")
    args = parser.parse_args()
    names = args.models.split(",") if args.models else registry.list_names("model")

    start = time.perf_counter()
    rows = {r["model"]: r for r in card_rows(224)}
    print(f"params and MACs of {len(rows)} models at 224x224: {time.perf_counter() - start:.1f} s")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}")
    for size in (int(s) for s in args.sizes.split(",") if s):  # --sizes "" skips the forward timing
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

    if args.train:
        print("\ntraining at 32x32, batch 128, the recipe's optimiser (cnn-s timed right after each model)")
        print(f"{'model':20} {'train img/s':>12} {'cnn-s':>9} {'ratio':>7}")
        slow = []
        for name in names:
            speed, reference = train_images_per_s(name), train_images_per_s("cnn-s")
            print(f"{name:20} {speed:12.1f} {reference:9.1f} {speed / reference:6.2f}x", flush=True)
            slow += [name] if speed < 100 else []
        for name in slow if args.profile else []:
            print(f"\n{name}: where a training step's time goes")
            profile(name)


if __name__ == "__main__":
    main()
