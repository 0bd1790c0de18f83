"""Wall time of the watermark scenario at ``quick`` on this machine, through the real CLI.

Three timings, each a separate ``secbench run watermark`` in a fresh results folder:

1. the first ``--attack crop`` (trains M, the clean model, both methods' H/R/D and stage 2, and
   three surrogates: none, baseline, structure) — issue 13's target ≤ 8 min on 2 idle CPU cores;
2. a further attack (``--attack rotate``) that reuses the cached owner networks — target ≤ 1 min;
3. optionally (``--grid``) the rest of ``--attack all`` — target ≤ 20 min for the whole grid.

Also prints how the first run's time splits between the owner's training and the thief's, from
the records. The machine is shared: rerun when the numbers matter.

    python benchmarks/watermark.py [--preset quick] [--grid] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from secbench import store


def timed(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "secbench", "run", "watermark", *args], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--grid", action="store_true", help="also time the rest of --attack all")
    parser.add_argument("--out", type=Path, help="results folder (default: a fresh temporary one)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="secbench-wm-bench-"))
    common = ["--preset", args.preset, "--out", str(out)]

    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    first = timed(["--attack", "crop", *common])
    records = store.load_records(out)
    owner = sum(s or 0 for r in records for s in r["derived"]["owner_train_s"].values() if not r["derived"]["owner_cached"])
    print(f"first run (--attack crop, 3 methods, owner networks trained): {first / 60:6.1f} min  (target ≤ 8)")
    print(f"  of which the owner's H/R/D + stage 2 training: {owner / 60:6.1f} min")
    further = timed(["--attack", "rotate", *common])
    print(f"a further attack (--attack rotate, cache reused):             {further / 60:6.1f} min  (target ≤ 1)")
    if args.grid:
        rest = timed(["--attack", "all", *common])
        print(f"the whole grid (--attack all, first two already done):        {(first + further + rest) / 60:6.1f} min"
              "  (target ≤ 20)")
    print(f"load average after: {os.getloadavg()[0]:.2f}; results in {out}")


if __name__ == "__main__":
    main()
