"""How well can any extractor read a structure mark off a surrogate? The ceiling of each target.

The structure mark's expected target is computed from the owner's clean answer, but the extractor
reads a different model's answer to the same query. Even an extractor that redraws that answer's
structure perfectly scores only the NC between the two models' structure maps. This script trains
the owner's model M and the independent clean model at ``quick`` (as the watermark scenario does,
cached in ``--out``) and prints that NC for the binary target (Poison Ink's ``sobel > 28``) and the
soft one (``secbench.imageops.soft_edges``), with the fraction of queries at NC ≥ 0.95.

    python benchmarks/structure_ceiling.py [--out DIR] [--seed 0]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from secbench.hiding import StructureMark
from secbench.hiding.marks import TARGETS, mark_nc
from secbench.scenarios.base import RunContext
from secbench.scenarios.watermark import (
    WatermarkConfig,
    _task_model,
    apply,
    structure_key,
    task_data,
    verification_queries,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="secbench-ceiling-")))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cfg = WatermarkConfig()
    ctx = RunContext(torch.device("cpu"), args.seed, torch.Generator().manual_seed(args.seed), args.out / "artifacts",
                     args.out / "cache")
    data = task_data(cfg)
    owner, clean = (_task_model(cfg, pair, role, ctx) for pair, role in ((data.owner, "owner-model"),
                                                                          (data.attacker, "clean-model")))
    queries, _ = data.test
    owner_answers = apply(owner, queries, ctx.device)
    kept = verification_queries(owner_answers, cfg.n_test, cfg.min_edges)
    owner_answers, other_answers = owner_answers[kept], apply(clean, queries[kept], ctx.device)
    key = structure_key(cfg, apply(owner, data.owner[0], ctx.device))  # as the scenario picks it
    print(f"{len(kept)} verification queries, seed {args.seed}: NC of the two models' structure marks")
    for target in TARGETS:
        mark = StructureMark(key, target=target)
        keys = mark.sample_key(len(kept), torch.Generator())
        nc = mark_nc(mark.expected(other_answers, keys), mark.expected(owner_answers, keys))
        print(f"  {target:7s} mean NC {nc.mean():.3f}   NC >= 0.95 on {(nc >= 0.95).double().mean():.3f}")


if __name__ == "__main__":
    main()
