"""Engine throughput against the per-sample DataLoader loop most backdoor toolkits use.

Trains ``cnn-s`` on ``shapes`` for the same number of steps, same model and batch size, three
ways in one process: secbench's engine (tensors in memory, batched flip + pad-crop), and a plain
PyTorch loop over a per-sample ``Dataset`` of PIL images with torchvision transforms, with 0 and
with 2 loader workers. Prints images/s for each and the ratios, and the model's achieved FLOP/s
against a dense matmul measured in the same run (how much of the CPU the small convs use).

    python benchmarks/engine.py [--steps 60] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode
from torchvision import transforms

from secbench.data import load_dataset
from secbench.engine import TrainConfig, fit, seed_everything
from secbench.registry import create_model

CPU = torch.device("cpu")


class PerSampleShapes(Dataset):
    """The toolkit way: one PIL image per ``__getitem__``, transformed one at a time."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in images]
        self.labels = labels.tolist()
        self.transform = transforms.Compose([transforms.RandomCrop(32, padding=4, padding_mode="reflect"),
                                             transforms.RandomHorizontalFlip(), transforms.ToTensor()])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[i]), self.labels[i]


def time_engine(data, build, steps: int, batch_size: int) -> float:
    n = steps * batch_size
    subset = data.train.subset(torch.arange(n) % len(data.train))
    model = create_model("cnn-s", **build)
    cfg = TrainConfig(epochs=1, batch_size=batch_size, lr=0.05, schedule="constant")
    start = time.perf_counter()
    fit(model, subset, cfg, generator=seed_everything(0), device=CPU)
    return n / (time.perf_counter() - start)


def time_plain_loop(data, build, steps: int, batch_size: int, workers: int) -> float:
    model = create_model("cnn-s", **build)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    loader = DataLoader(PerSampleShapes(data.train.images, data.train.labels), batch_size=batch_size, shuffle=True,
                        num_workers=workers, drop_last=True, persistent_workers=workers > 0)
    model.train()
    done, start = 0, time.perf_counter()
    while done < steps:
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
    return steps * batch_size / (time.perf_counter() - start)


def train_flops_per_image(build, batch_size: int) -> float:
    model = create_model("cnn-s", **build)
    x, y = torch.rand(batch_size, 3, 32, 32), torch.randint(0, 10, (batch_size,))
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / batch_size


def matmul_flops_per_s(n: int = 1024, reps: int = 20) -> float:
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    data = load_dataset("shapes", n_train=args.steps * args.batch_size // 2, n_test=100)
    build = {"num_classes": data.num_classes, "img_size": data.img_size, "mean": data.mean, "std": data.std}
    # Each contender runs twice, interleaved, and keeps its best: the first pass of any loop pays for
    # allocator and thread-pool warm-up, and a shared machine stalls some passes at random.
    engine = plain0 = plain2 = 0.0
    for _ in range(2):
        engine = max(engine, time_engine(data, build, args.steps, args.batch_size))
        plain0 = max(plain0, time_plain_loop(data, build, args.steps, args.batch_size, workers=0))
        plain2 = max(plain2, time_plain_loop(data, build, args.steps, args.batch_size, workers=2))
    flops = train_flops_per_image(build, args.batch_size)
    peak = matmul_flops_per_s()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.steps} steps x batch {args.batch_size}")
    print(f"engine (in-memory tensors, batched aug)  {engine:8.0f} img/s")
    print(f"DataLoader per-sample, 0 workers        {plain0:8.0f} img/s   engine/plain = {engine / plain0:.2f}x")
    print(f"DataLoader per-sample, 2 workers        {plain2:8.0f} img/s   engine/plain = {engine / plain2:.2f}x")
    print(f"cnn-s training: {flops / 1e6:.1f} MFLOP/img -> {engine * flops / 1e9:.2f} GFLOP/s achieved; "
          f"dense matmul {peak / 1e9:.1f} GFLOP/s; utilisation {engine * flops / peak:.1%}")


if __name__ == "__main__":
    main()
