"""Suite throughput: a grid of clean runs on the local launcher with 2 workers x 1 thread, against the same
runs one after another in one process with 2 threads, and 1 worker x 2 threads; plus the expansion and
skip check of a 10,000-run grid. Each layout gets a fresh results folder (nothing is cached between them).

    python benchmarks/suite.py [--runs 8] [--preset smoke]

Prints seconds per layout and the ratios measured side by side in this one invocation.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from secbench.suite import expand, load_suite, states


def suite_text(runs: int, preset: str) -> str:
    lrs = ", ".join(f"{0.02 + 0.01 * i:.2f}" for i in range(runs))
    return f"scenario: clean\npreset: {preset}\ndevice: cpu\noptions: {{dataset: digits}}\ngrid: {{lr: [{lrs}]}}\nseeds: [0]\n"


def timed(command: list[str], threads: int) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--preset", default="smoke")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        suite = Path(scratch) / "suite.yaml"
        suite.write_text(suite_text(args.runs, args.preset))
        base = [sys.executable, "-m", "secbench", "suite", str(suite)]
        layouts = {"2 workers x 1 thread": (["--jobs", "2", "--threads", "1"], 1),
                   "1 worker x 2 threads": (["--jobs", "1", "--threads", "2"], 2)}
        seconds = {name: timed([*base, *flags, "--out", f"{scratch}/{i}"], threads)
                   for i, (name, (flags, threads)) in enumerate(layouts.items())}
        lrs = [0.02 + 0.01 * i for i in range(args.runs)]
        serial = [sys.executable, "-c", "import subprocess, sys; [subprocess.run([sys.executable, '-m', 'secbench', "
                  f"'run', 'clean', '--preset', '{args.preset}', '--dataset', 'digits', '--device', 'cpu', '--lr', "
                  f"str(lr), '--out', '{scratch}/serial'], check=True, capture_output=True) for lr in {lrs}]"]
        seconds["one after another (2 threads)"] = timed(serial, 2)

        grid = Path(scratch) / "grid.yaml"
        grid.write_text("scenario: clean\npreset: smoke\ndevice: cpu\ngrid:\n  lr: [" + ", ".join(
            f"{0.001 * i:.3f}" for i in range(1, 101)) + "]\n  epochs: [" + ", ".join(map(str, range(1, 11))) +
            "]\nseeds: [" + ", ".join(map(str, range(10))) + "]\n")
        started = time.perf_counter()
        specs = expand(load_suite(grid), "cpu")
        Path(f"{scratch}/serial").mkdir(exist_ok=True)
        states(specs, Path(f"{scratch}/serial"))
        expansion = time.perf_counter() - started

    load = os.getloadavg()[0]
    print(f"{args.runs} clean runs at {args.preset} (load average at the end {load:.1f}, {os.cpu_count()} cores):")
    for name, s in seconds.items():
        print(f"  {name:32s} {s:7.1f} s")
    parallel = seconds["2 workers x 1 thread"]
    print(f"  speed-up of 2 x 1 over one after another: {seconds['one after another (2 threads)'] / parallel:.2f}x")
    print(f"  speed-up of 2 x 1 over 1 x 2:             {seconds['1 worker x 2 threads'] / parallel:.2f}x")
    print(f"expansion and skip check of {len(specs):,} runs: {expansion:.2f} s")


if __name__ == "__main__":
    main()
