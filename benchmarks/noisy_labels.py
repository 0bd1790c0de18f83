"""Wall time of the noisy-labels scenario at ``quick``, and where a segmenter's training time goes.

1. ``secbench run noisy-labels`` (PNAL at 60 % symmetric noise, the clean-label upper bound trained
   alongside) in a fresh results folder, through the real CLI: issue 16's target ≤ 10 min on 2 cores;
   then one more method on the same folder (the upper bound is cached).
2. Training throughput (blocks/s) of DGCNN and PointNet at the ``quick`` block size, side by side in
   this process, and DGCNN's forward time split into its k-NN graphs, edge-feature gathers and MLPs.

The machine is shared: the load average is printed beside the times.

    python benchmarks/noisy_labels.py [--skip-run] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from defenses.noisy_labels.losses import cross_entropy
from secbench.models import pointseg
from secbench.scenarios.noisy_labels import NoisyLabelsConfig


def timed(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "secbench", "run", "noisy-labels", *args], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def throughput(model: torch.nn.Module, blocks: torch.Tensor, labels: torch.Tensor, steps: int = 6) -> float:
    """Training blocks per second (forward, backward, Adam step), after one warm-up step."""
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    model.train()
    for step in range(steps + 1):
        if step == 1:
            started = time.perf_counter()
        loss = cross_entropy(model(blocks), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps * len(blocks) / (time.perf_counter() - started)


@torch.no_grad()
def dgcnn_split(model: pointseg.DGCNN, blocks: torch.Tensor, repeats: int = 5) -> dict[str, float]:
    """Forward seconds spent in each part of DGCNN (summed over its three EdgeConv layers)."""
    model.eval()
    parts = dict.fromkeys(("k-NN graph", "edge gather", "edge MLP + max", "embed + head"), 0.0)
    for _ in range(repeats):
        x = blocks
        outs = []
        for i, layer in enumerate((model.edge1, model.edge2, model.edge3)):
            t0 = time.perf_counter()
            neighbours = pointseg.knn(blocks[:, :3] if i == 0 else x, layer.k)
            t1 = time.perf_counter()
            edges = pointseg.edge_features(x, neighbours)
            t2 = time.perf_counter()
            x = layer.mlp(edges).amax(-1)
            t3 = time.perf_counter()
            parts["k-NN graph"] += t1 - t0
            parts["edge gather"] += t2 - t1
            parts["edge MLP + max"] += t3 - t2
            outs.append(x)
        t0 = time.perf_counter()
        model.head(model.embed(torch.cat(outs, 1)))
        parts["embed + head"] += time.perf_counter() - t0
    return {k: v / repeats for k, v in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-run", action="store_true", help="only the throughput and the time split")
    parser.add_argument("--out", type=Path, help="results folder (default: a fresh temporary one)")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores, "
          f"torch threads {torch.get_num_threads()}")
    if not args.skip_run:
        out = args.out or Path(tempfile.mkdtemp(prefix="secbench-nl-bench-"))
        first = timed(["--out", str(out)])
        print(f"secbench run noisy-labels (pnal + the upper bound): {first / 60:5.1f} min  (target ≤ 10)")
        further = timed(["--method", "ce", "--out", str(out)])
        print(f"one more method (--method ce, upper bound cached):   {further / 60:5.1f} min")

    cfg = NoisyLabelsConfig()
    torch.manual_seed(0)
    blocks = torch.rand(cfg.batch_size, 9, cfg.block_points)
    labels = torch.randint(0, 11, (cfg.batch_size, cfg.block_points))
    dgcnn = pointseg.DGCNN(11, k=cfg.k, embed=cfg.embed)
    rates = {"dgcnn": throughput(dgcnn, blocks, labels), "pointnet": throughput(pointseg.PointNet(11), blocks, labels)}
    print(f"training throughput at {cfg.block_points} points per block, batch {cfg.batch_size}:")
    for name, rate in rates.items():
        print(f"  {name:9s} {rate:7.1f} blocks/s  ({rate / rates['dgcnn']:.1f}x dgcnn)")
    split = dgcnn_split(dgcnn, blocks)
    total = sum(split.values())
    print(f"DGCNN forward, {total * 1e3:.0f} ms per batch (k = {cfg.k}):")
    for part, seconds in split.items():
        print(f"  {part:16s} {seconds * 1e3:6.1f} ms  {seconds / total:5.1%}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
