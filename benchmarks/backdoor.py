"""Backdoor scenario cost: each attack end to end at a preset (quick by default), and trigger throughput.

Every registered backdoor attack (``--attacks`` to choose) runs ``secbench run backdoor`` twice in one
scratch results folder that already holds the clean victim (trained once, timed apart):
- ``first_s``: everything the attack needs from scratch (a learned trigger is trained here);
- ``cached_trigger_s``: again with the backdoored model removed from the cache but a learned trigger
  kept, i.e. the cost of a new victim for an attack whose trigger already exists (for fixed triggers,
  the same work as ``first_s``).
``apply img/s`` is the poisoning throughput of ``attack.apply`` over the training images (batches of
1,024, after ``prepare``). The metrics of the first run are printed beside the times.

    python benchmarks/backdoor.py [--attacks badnets,wanet] [--preset quick] [--device cpu]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from attacks.backdoor import backdoor_attack_names
from secbench.config import resolve
from secbench.engine import seed_everything, select_device
from secbench.registry import create
from secbench.runner import RunSpec, execute
from secbench.scenarios.backdoor import Backdoor
from secbench.scenarios.backdoored import BackdoorConfig, load_data
from secbench.scenarios.base import RunContext
from secbench.scenarios.victim import VictimConfig, train_victim

SHOWN = ("clean_acc", "clean_model_acc", "asr", "psnr_db", "ssim", "asr_tf_flip", "asr_tf_crop", "asr_tf_rotate")


def apply_throughput(cfg: BackdoorConfig, ctx: RunContext) -> float:
    """Images per second of the prepared trigger over the training set."""
    data = load_data(cfg)
    attack = create("attack", cfg.attack, seed=ctx.seed)
    attack.prepare(data.train, ctx)
    images = data.train.images
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(images), 1024):
            attack.apply(images[i : i + 1024].float().div(255).to(ctx.device))
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attacks", default=None, help="comma-separated (default: every backdoor attack)")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    names = args.attacks.split(",") if args.attacks else backdoor_attack_names()
    device = select_device(args.device)
    out = Path(tempfile.mkdtemp(prefix="secbench-backdoor-bench-"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {device}, preset {args.preset}, "
          f"seed {args.seed}, scratch folder {out}")

    def context(seed: int) -> RunContext:
        return RunContext(device=device, seed=seed, generator=seed_everything(seed), artifacts=out / "bench",
                          cache=out / "cache")

    base = resolve(Backdoor.Config, Backdoor.presets, args.preset, {"attack": names[0]})
    start = time.perf_counter()
    train_victim(VictimConfig.from_dict(base), context(args.seed))
    print(f"clean victim ({base['model']} on {base['dataset']}): {time.perf_counter() - start:.1f} s, then cached\n")
    print(f"{'attack':12} {'first_s':>8} {'cached_trigger_s':>17} {'apply img/s':>12} "
          + " ".join(f"{m:>15}" for m in SHOWN))
    for name in names:
        cfg = {**resolve(Backdoor.Config, Backdoor.presets, args.preset, {"attack": name}), "device": device.type}
        spec = RunSpec("backdoor", Backdoor.version, args.preset, args.seed, cfg)
        first, _ = execute(Backdoor(), spec, out, device=device, force=True)
        for entry in (out / "cache").glob(f"backdoored-*-{name}-*"):
            shutil.rmtree(entry)
        second, _ = execute(Backdoor(), spec, out, device=device, force=True)
        throughput = apply_throughput(BackdoorConfig.from_dict(cfg), context(args.seed))
        metrics = first["metrics"]
        print(f"{name:12} {first['timing']['wall_s']:8.1f} {second['timing']['wall_s']:17.1f} {throughput:12,.0f} "
              + " ".join(f"{metrics.get(m, float('nan')):15.4f}" for m in SHOWN), flush=True)
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
