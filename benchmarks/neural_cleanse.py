"""Neural Cleanse: all labels reverse-engineered in one batched run against the authors' per-label loop.

Both modes run on the same backdoored 10-class model (``secbench run backdoor``'s, BadNets at the preset,
trained or loaded from ``--out``'s cache), the same clean budget (5% of the training set) and the same
optimisation steps per label; each label starts from the same point and sees the same batches in both
modes. Prints both wall times, their ratio, the mask norms and each mode's flagged labels (the
backdoor's target is 0). Target: batched at least 5x faster, with the same flagged label.

    python benchmarks/neural_cleanse.py [--preset quick] [--steps 300] [--device cpu] [--out DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from defenses.backdoor.neural_cleanse import anomaly_index, flagged_labels, reverse_all
from secbench.config import resolve
from secbench.engine import seed_everything, select_device
from secbench.scenarios.backdoor import Backdoor
from secbench.scenarios.backdoor_defense import clean_budget
from secbench.scenarios.backdoored import BackdoorConfig, train_backdoored
from secbench.scenarios.base import RunContext


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--steps", type=int, default=None, help="steps per label (default: the preset's --nc-steps)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs", help="results folder whose cache holds (or gets) the model")
    args = parser.parse_args()
    cfg = BackdoorConfig(**resolve(BackdoorConfig, Backdoor.presets, args.preset, {"attack": "badnets"}))
    device = select_device(args.device)
    ctx = RunContext(device=device, seed=args.seed, generator=seed_everything(args.seed), artifacts=Path(args.out),
                     cache=Path(args.out) / "cache")
    backdoored = train_backdoored(cfg, ctx)
    budget = clean_budget(backdoored.poisoned.clean, cfg.defense_data, seed=args.seed)
    steps = args.steps or cfg.nc_steps
    print(f"{cfg.dataset} / {cfg.model} / badnets target {cfg.target}: {len(budget)} clean images, "
          f"{backdoored.data.num_classes} labels, {steps} steps per label, device {device}")
    results = {}
    for sequential in (False, True):
        start = time.perf_counter()
        triggers = reverse_all(backdoored.model, budget, backdoored.data.num_classes, sequential=sequential,
                               steps=steps, seed=args.seed, device=device)
        results["sequential" if sequential else "batched"] = (time.perf_counter() - start, triggers)
    for mode, (seconds, triggers) in results.items():
        index = anomaly_index(triggers.norms)
        print(f"{mode:>10}: {seconds:8.1f} s  flagged {flagged_labels(triggers.norms)}  "
              f"norms {[round(v) for v in triggers.norms.tolist()]}  anomaly {[round(v, 1) for v in index.tolist()]}")
    print(f"speed-up batched vs sequential: {results['sequential'][0] / results['batched'][0]:.2f}x")


if __name__ == "__main__":
    main()
