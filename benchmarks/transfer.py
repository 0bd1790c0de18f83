"""Few-label transfer at ``quick``: wall time of the default run, the paper's four findings, k-means cost.

1. Runs ``secbench run transfer`` with the quick defaults (shapes → digits, cnn-s, the four
   pretrainings, k = 1, 2, 4, 10, three selection strategies) for ``--seeds`` on ``--threads`` CPU
   threads, and prints the wall time of each run and the wall and CPU time of the whole command (target:
   ≤ 10 min for one seed on 2 cores; on a busy machine, one thread's CPU time bounds an idle core's wall
   time). Pretrained encoders are cached in ``--out``: a second call only re-evaluates.
2. Checks the findings of Li et al. 2021 (arXiv 2107.12369) on the results, mean over seeds:
   (a) with few labels (k = 1), SimCLR (``ssl``) trails ``supervised`` pretraining;
   (b) adding the unlabelled target (``ssl-target``) raises target clustering quality (NMI) over ``ssl``,
       and narrows the few-label gap to ``supervised``;
   (c) better clustering goes with better few-label accuracy (Spearman over methods x seeds);
   (d) anchored k-means selection beats random selection at equal budget, every round.
3. Times k-means (k = 10, 10 restarts, as the clustering metric runs it) and selection (one-shot
   k-means of 100 picks; anchored k-means: 100 anchors + 10 new) on 10,000 random 128-D unit features.

    python benchmarks/transfer.py [--seeds 0] [--threads 2] [--out runs/bench-transfer] [--skip-run]
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from reports.frame import load  # noqa: E402
from secbench.commands import run_scenario  # noqa: E402
from secbench.fewlabel.clustering import kmeans  # noqa: E402
from secbench.fewlabel.selection import cluster_selection  # noqa: E402
from secbench.scenarios.transfer import Transfer  # noqa: E402


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_default(out: Path, seeds: list[int]) -> tuple[float, float]:
    """Wall and CPU seconds of the default quick command. On a shared machine the wall time depends on
    the other jobs; CPU time does not (much): with one thread it is the wall time of an idle core."""
    wall, cpu = time.perf_counter(), _cpu_s()
    failed = run_scenario(Transfer, preset="quick", seeds=seeds, device="cpu", out_dir=out, force=False, overrides={})
    if failed:
        raise SystemExit(f"{failed} run(s) failed")
    return time.perf_counter() - wall, _cpu_s() - cpu


def findings(out: Path) -> None:
    df = load(out)
    df = df[(df["scenario"] == "transfer") & (df["preset"] == "quick")]
    table = df.pivot_table(index=["method", "seed"], columns="metric", values="value")
    mean = table.groupby("method").mean()
    pd.set_option("display.width", 160)
    cols = ["linear_k1", "knn_k1", "finetune_k1", "linear_k10", "finetune_k10", "cluster_nmi", "cluster_acc"]
    print("\nmean over seeds:\n" + mean[cols].round(3).to_string())

    def gap(a: str, b: str, metric: str) -> float:
        return float(mean.loc[a, metric] - mean.loc[b, metric])

    print("\n(a) ssl trails supervised at k=1:")
    for metric in ("linear_k1", "knn_k1", "finetune_k1"):
        d = gap("supervised", "ssl", metric)
        print(f"    {metric:12s} supervised - ssl = {d:+.3f}  {'holds' if d > 0 else 'does not hold'}")
    print("(b) ssl-target - ssl (holds if > 0), and supervised - ssl-target against supervised - ssl:")
    for metric in ("cluster_nmi", "cluster_acc", "linear_k1", "knn_k1", "finetune_k1"):
        d = gap("ssl-target", "ssl", metric)
        print(f"    {metric:12s} {d:+.3f} {'holds' if d > 0 else 'does not hold'}   "
              f"supervised - ssl {gap('supervised', 'ssl', metric):+.3f}, "
              f"supervised - ssl-target {gap('supervised', 'ssl-target', metric):+.3f}")
    print("(c) Spearman rho between cluster_nmi and few-label accuracy over methods x seeds:")
    for metric in ("linear_k1", "knn_k1", "finetune_k1", "linear_k10"):
        rho = spearmanr(table["cluster_nmi"], table[metric]).statistic
        print(f"    {metric:12s} rho = {rho:+.2f}  (n = {len(table)})")
    rounds = sorted(int(c.rsplit("_r", 1)[1]) for c in table.columns if c.startswith("select_random_r"))
    print("(d) selection accuracy by round (mean over methods and seeds): random / one-shot k-means / anchored")
    for r in rounds:
        acc = {s: table[f"select_{s}_r{r}"].mean() for s in ("random", "kmeans", "anchored")}
        wins = (table[f"select_anchored_r{r}"] > table[f"select_random_r{r}"]).mean()
        print(f"    round {r}: {acc['random']:.3f} / {acc['kmeans']:.3f} / {acc['anchored']:.3f}  "
              f"anchored > random in {wins:.0%} of runs")


def time_selection() -> None:
    """Random unit vectors: no cluster structure, so Lloyd's iterations run long (a worst case)."""
    print(f"k-means and selection on 10,000 random 128-D unit features, {torch.get_num_threads()} thread(s):")
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(10_000, 128, generator=g), dim=1)
    for what, call in (
        ("k-means k=10, 10 restarts", lambda: kmeans(x, 10, generator=g, n_init=10)),
        ("one-shot k-means selection of 100", lambda: cluster_selection(x, torch.zeros(0, dtype=torch.long), 100,
                                                                        generator=g)),
        ("anchored selection: 100 anchors + 10 new", lambda: cluster_selection(x, torch.arange(100), 10,
                                                                               generator=g)),
    ):
        walls, cpus = [], []
        for _ in range(3):
            wall, cpu = time.perf_counter(), _cpu_s()
            call()
            walls.append(time.perf_counter() - wall)
            cpus.append(_cpu_s() - cpu)
        print(f"{what:45s} {np.median(walls):6.2f} s wall, {np.median(cpus):6.2f} s CPU (median of 3)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-transfer"))
    parser.add_argument("--skip-run", action="store_true", help="only analyse the results already in --out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.skip_run:
        wall, cpu = run_default(args.out, [int(s) for s in args.seeds.split(",")])
        print(f"default quick run (seeds {args.seeds}, {args.threads} threads): {wall / 60:.1f} min wall, "
              f"{cpu / 60:.1f} min CPU, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    findings(args.out)
    print()
    time_selection()


if __name__ == "__main__":
    main()
