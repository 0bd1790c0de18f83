"""Does stage 1 of the structure watermark learn a decodable mark on every seed? An ablation.

Stage 1 trains H, R and D on the owner's model outputs. When it fails, its extraction loss stays
on a plateau for all of its steps while R still tells marked from unmarked answers (AUROC near
1) but paints the wrong ink: with the official ReLU output one of R's colour channels can die
(exactly 0 on a share of pixels, where the blank and the key are near 1, so no gradient comes
back). For each seed this script trains the owner's model M at ``quick`` (as the scenario does,
cached in ``--out``), then stage 1 once per combination of R's last activation
(``--extractor-output``) and the bound curriculum (``--start-psnr``: the bounded embedder's
guaranteed PSNR when stage 1 starts, moved linearly to ``--min-psnr``), and prints, on the test
queries: NC of R on the API's marked answers, the fraction at NC >= 0.95, AUROC against the
unmarked answers, the share of R's outputs that are exactly 0 in its deadest channel, the step at
which the extraction loss left its first level (first 50-step mean below a quarter of the first
one) and the wall time of stage 1.

    OMP_NUM_THREADS=1 python benchmarks/watermark_stage1.py --seeds 0,1,2 [--extractor-output relu,linear]
        [--start-psnr 36,24] [--out DIR]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from defenses.watermark.owner import Protection, _nets, train_stage_one
from secbench.metrics import auroc, success_rate
from secbench.registry import create
from secbench.scenarios.base import RunContext
from secbench.scenarios.watermark import (
    WatermarkConfig,
    _task_model,
    apply,
    structure_key,
    task_data,
    verification_queries,
)


def escape_step(extract_loss: list[float], window: int = 50) -> int | None:
    """First step whose ``window``-step mean loss is below a quarter of the first window's."""
    losses = torch.tensor(extract_loss)
    means = losses.unfold(0, window, window).mean(1)
    below = (means < means[0] / 4).nonzero()
    return int(below[0]) * window if len(below) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="secbench-stage1-")))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--start-psnr", default="36", help="comma list of curricula (36: none)")
    parser.add_argument("--extractor-output", default="relu,linear", help="comma list of R's last activations")
    parser.add_argument("--steps", type=int, default=WatermarkConfig().hiding_steps)
    args = parser.parse_args()
    cfg = WatermarkConfig(hiding_steps=args.steps)
    data = task_data(cfg)
    print("seed  start_psnr  R output  api_nc  api_success  auroc  dead  escape_step  wall_s")
    for seed in (int(s) for s in args.seeds.split(",")):
        ctx = RunContext(torch.device("cpu"), seed, torch.Generator().manual_seed(seed), args.out / "artifacts",
                         args.out / "cache")
        owner = _task_model(cfg, data.owner, "owner-model", ctx)
        covers, inputs = apply(owner, data.owner[0], ctx.device), data.owner[0]
        answers = apply(owner, data.test[0], ctx.device)
        answers = answers[verification_queries(answers, cfg.n_test, cfg.min_edges)]
        method = create("defense", "watermark-structure", key=structure_key(cfg, covers), target=cfg.structure_target)
        for start, output in itertools.product((float(s) for s in args.start_psnr.split(",")),
                                               args.extractor_output.split(",")):
            recipe = replace(cfg.owner_recipe(), start_psnr=start, extractor_output=output)
            generator = ctx.stream("owner", "structure")  # before the nets: it seeds their initialisation too
            nets = _nets(recipe, method)
            started = time.perf_counter()
            history = train_stage_one(nets, method, recipe, covers, inputs, generator=generator, device=ctx.device)
            wall = time.perf_counter() - started
            protection = Protection(method, nets.embedder, nets.extractor, {}, cached=False)
            marked_nc = protection.read(protection.mark_outputs(answers, ctx.device), answers, ctx.device).nc
            clean_nc = protection.read(answers, answers, ctx.device).nc
            dead = (protection.extract(answers, ctx.device) == 0).double().mean((0, 2, 3)).max()
            print(f"{seed:4d}  {start:10.1f}  {output:>8s}  {marked_nc.mean():6.3f}  {success_rate(marked_nc, 0.95):11.3f}  "
                  f"{auroc(marked_nc, clean_nc):5.3f}  {dead:4.2f}  {str(escape_step(history['extract_loss'])):>11s}  "
                  f"{wall:6.0f}", flush=True)


if __name__ == "__main__":
    main()
