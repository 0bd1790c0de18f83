"""Which stage 2 makes the structure watermark verify on thieves' surrogates? A side-by-side ablation.

Stage 2 fine-tunes R alone on the outputs of surrogates the owner trains itself. The thief's
surrogate learns from H's marked answers, so it does not depend on stage 2: for each seed this
script trains M (cached in ``--out``), stage 1 once, one thief per ``--attacks`` entry once, and then
every stage-2 variant from the same stage-1 R, and prints, on the test queries, the structure
mark's success (NC >= 0.95) on each thief's answers, mean NC, AUROC against the clean references,
and the false positives on the independent clean model and on natural images.

A variant is ``owner_attacks/tune_steps[/unmarked]``: the augmentation of each of the owner's
stage-2 surrogates (``none`` is the paper's plain surrogate), R's stage-2 updates, and optionally a
surrogate of the unmarked model among R's blanks, e.g. ``none/1000`` (the paper's stage 2 at the
``quick`` budget), ``none+crop+rotate+resize/1000`` or ``none/2000/unmarked``.

    OMP_NUM_THREADS=1 python benchmarks/watermark_stage2.py --seeds 1 [--attacks none,crop,rotate,resize,jpeg]
        [--variants none/1000,none+none/1000,none+crop+rotate+resize/1000] [--out DIR]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from defenses.watermark.owner import Protection, _nets, train_stage_one, train_stage_two
from secbench.metrics import auroc
from secbench.registry import create
from secbench.scenarios.base import RunContext
from secbench.scenarios.watermark import (
    WatermarkConfig,
    _steal,
    _verify,
    apply,
    model_answers,
    structure_key,
    task_data,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="secbench-stage2-")))
    parser.add_argument("--seeds", default="1")
    parser.add_argument("--attacks", default="none,crop,rotate,resize")
    parser.add_argument("--variants", default="none/1000,none+none/1000,none+crop+rotate+resize/1000")
    args = parser.parse_args()
    cfg = WatermarkConfig()
    data = task_data(cfg)
    attacks = args.attacks.split(",")
    print("seed  variant                            attack   success  nc     auroc  fp_clean  fp_natural  stage2_s")
    for seed in (int(s) for s in args.seeds.split(",")):
        ctx = RunContext(torch.device("cpu"), seed, torch.Generator().manual_seed(seed), args.out / "artifacts",
                         args.out / "cache")
        covers, thief_out, (test_in, test_gt, test_out, clean_out) = model_answers(cfg, data, ctx)
        (owner_in, owner_gt), (thief_in, thief_gt) = data.owner, data.attacker

        method = create("defense", "watermark-structure", key=structure_key(cfg, covers), target=cfg.structure_target)
        recipe = cfg.owner_recipe()
        generator = ctx.stream("owner", "structure")  # as the scenario: it seeds the nets' initialisation too
        nets = _nets(recipe, method)
        train_stage_one(nets, method, recipe, covers, owner_in, generator=generator, device=ctx.device)
        stage1 = Protection(method, nets.embedder, nets.extractor, {}, cached=False)
        answers = stage1.mark_outputs(thief_out, ctx.device)
        suspects = {a: apply(_steal(cfg, thief_in, answers, (thief_in, thief_gt), a, ctx), test_in, ctx.device)
                    for a in attacks}
        for variant in args.variants.split(","):
            owner_attacks, steps, *blanks = variant.split("/")
            tuned = Protection(method, nets.embedder, copy.deepcopy(nets.extractor), {}, cached=False)
            started = time.perf_counter()
            train_stage_two(tuned, replace(recipe, owner_attacks=tuple(owner_attacks.split("+")),
                                           tune_steps=int(steps), unmarked_surrogate=blanks == ["unmarked"]),
                            covers, owner_in, owner_gt, generator=ctx.stream("stage2", variant), device=ctx.device)
            wall = time.perf_counter() - started
            for attack, suspect in suspects.items():
                check = _verify(tuned, suspect, test_out, clean_out, test_gt, cfg, ctx.device)
                print(f"{seed:4d}  {variant:33s}  {attack:7s}  {check.rate(check.suspect):7.3f}  "
                      f"{check.suspect.nc.mean():.3f}  {auroc(check.suspect.nc, check.references.nc):.3f}  "
                      f"{check.rate(check.clean_model):8.3f}  {check.rate(check.natural):10.3f}  {wall:8.0f}", flush=True)


if __name__ == "__main__":
    main()
