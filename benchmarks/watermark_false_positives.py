"""Where the structure watermark's false positives come from: key-coloured edges, not faint echoes.

For each seed of a results folder whose owner networks are cached (``secbench run watermark ... --out
DIR``), R reads the independent clean model's answers and the natural test images. The script prints,
by the colour of each image's structure (edge chroma within cos 0.8 of the key's, or not), how many
R calls marked (NC >= 0.95), and the amplitude of the mark in those readings (1: full strength; a
scale-free NC would also accept a faint echo). Then, per hue of the key palette, the share of the
owner's answers and of the test queries whose edges have that colour (what ``--key auto`` minimises
on the owner's answers).

    OMP_NUM_THREADS=1 python benchmarks/watermark_false_positives.py --out DIR --seeds 0,1,2 [--key auto|#f07814]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from defenses.watermark.methods import has_key_colour, hex_colour, key_palette, key_shares
from secbench.scenarios.base import RunContext
from secbench.scenarios.watermark import WatermarkConfig, _protection, model_answers, structure_key, task_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="a results folder with the owner networks cached")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--key", default="auto")
    args = parser.parse_args()
    cfg = WatermarkConfig(key=args.key)
    data = task_data(cfg)
    for seed in (int(s) for s in args.seeds.split(",")):
        ctx = RunContext(torch.device("cpu"), seed, torch.Generator().manual_seed(seed), args.out / "artifacts",
                         args.out / "cache")
        owner_out, _, (_, test_gt, test_out, clean_out) = model_answers(cfg, data, ctx)
        protection = _protection(cfg, "structure", data.owner, owner_out, ctx)
        key = torch.tensor(structure_key(cfg, owner_out))
        print(f"seed {seed}: key {hex_colour(key.tolist())}"
              f"{'' if protection.cached else ' (NOT cached: trained now)'}")
        for name, images, references in (("clean model", clean_out, test_out), ("natural", test_gt, test_gt)):
            reading = protection.read(images, references, ctx.device)
            hit = reading.nc >= cfg.threshold
            keyed = has_key_colour(images, key[None])[:, 0]
            for label, group in (("key-coloured edges", keyed), ("other edges", ~keyed)):
                hits = hit & group
                amplitude = reading.amplitude[hits].median().item() if hits.any() else float("nan")
                print(f"  {name:11s} {label:18s} n={int(group.sum()):3d}  false positives {hits.sum().item():3d} "
                      f"({hits.sum().item() / max(1, int(group.sum())):.3f})  median amplitude of those {amplitude:.2f}")
        palette = key_palette()
        owner_share, test_share = key_shares(owner_out, palette), key_shares(test_out, palette)
        print("  hue  key      owner's answers  test queries")
        for i, colour in enumerate(palette.tolist()):
            print(f"  {i * 30:3d}  {hex_colour(colour)}  {owner_share[i]:15.3f}  "
                  f"{test_share[i]:12.3f}")


if __name__ == "__main__":
    main()
