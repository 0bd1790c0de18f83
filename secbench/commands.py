"""What ``secbench run`` and ``secbench list`` do, kept apart from the click wiring in ``cli.py``."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from secbench import registry
from secbench.config import PRESETS, resolve
from secbench.console import stdout_console
from secbench.errors import SecbenchError, UnknownNameError

if TYPE_CHECKING:
    from secbench.runner import RunSpec

KIND_NAMES = {"scenarios": "scenario", "attacks": "attack", "defenses": "defense", "models": "model",
              "datasets": "dataset", "pointclouds": "pointcloud", "segmenters": "segmenter",
              "detection-datasets": "detection-dataset", "detectors": "detector"}


def run_scenario(scenario_cls: type, *, preset: str, seeds: list[int], device: str, out_dir: Path, force: bool,
                 overrides: dict[str, Any], console: Console | None = None) -> int:
    """Resolve, expand and execute every run of one command; print the results table; return the failures."""
    from secbench import distributed
    from secbench.engine import select_device
    from secbench.progress import NullProgress, RichProgress
    from secbench.runner import execute

    console = console or stdout_console()
    errors = Console(stderr=True)
    check_writable(out_dir)
    dev = distributed.init_from_env() or select_device(device)  # torchrun: this rank's GPU, or the CPU
    main = distributed.is_main()
    scenario = scenario_cls()
    specs = expand_runs(scenario_cls, preset, seeds, dev.type, overrides)
    finished: list[tuple[dict[str, Any], bool]] = []
    shown = RichProgress(errors) if main else contextlib.nullcontext(NullProgress())
    with shown as progress, progress.task(f"{scenario.name} ({preset})", total=len(specs)) as bar:
        for spec in specs:
            record, cached = execute(scenario, spec, out_dir, device=dev, force=force, progress=progress)
            if record["status"] != "ok":
                errors.print(f"[red]run {record['run_id']} (seed {spec.seed}) failed: {record['reason']}[/red]")
            finished.append((record, cached))
            bar.advance(1)
    if main:
        console.print(_runs_table(finished, out_dir, scenario.headline))
    return sum(r["status"] != "ok" for r, _ in finished)


def expand_runs(scenario_cls: type, preset: str, seeds: list[int], device_type: str,
                overrides: dict[str, Any]) -> list[RunSpec]:
    """The runs one command (or one suite entry) asks for: the resolved config, expanded by the scenario's
    grid and the seeds; an item named twice is one run, and options that expand to none are an error."""
    from secbench.runner import RunSpec

    scenario = scenario_cls()
    cfg = resolve(scenario_cls.Config, scenario_cls.presets, preset, overrides)
    cfg["device"] = device_type
    specs = [RunSpec(scenario.name, scenario.version, preset, seed, c) for c in scenario.grid(cfg) for seed in seeds]
    specs = list({spec.config_hash: spec for spec in specs}.values())
    if not specs:
        raise SecbenchError("these options expand to no runs: a comma list option (such as --attack, --method or "
                            "--model) is empty; name at least one")
    return specs


def check_writable(out_dir: Path) -> None:
    """Fail before any work when ``--out`` cannot take results (not creatable, read-only, not permitted)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out_dir).close()
    except OSError as exc:
        raise SecbenchError(f"--out {out_dir}: cannot write results there ({exc.strerror}); choose a folder you "
                            "can write to") from exc


def _runs_table(finished: list[tuple[dict[str, Any], bool]], out_dir: Path, headline: tuple[str, ...]) -> Table:
    """One row per run. A single run shows every metric; several show the scenario's headline metrics
    (every metric stays in the record, for ``secbench report``)."""
    records = [r for r, _ in finished]
    identity = [k for k in ("dataset", "model", "method", "attack", "defense") if any(r.get(k) for r in records)]
    metrics = list(dict.fromkeys(m for r in records for m in r["metrics"]))
    if len(records) > 1 and headline:
        metrics = [m for m in headline if m in metrics]
    table = Table(title=f"{records[0]['scenario']} ({records[0]['preset']}) → {out_dir}/results.jsonl")
    if len(records) == 1:
        record, cached = finished[0]
        table.add_column("field")
        table.add_column("value", justify="right")
        for key in ("run_id", "seed", *identity):
            table.add_row(key, str(record.get(key)))
        table.add_row("status", "cached" if cached else record["status"], style="red" if record["status"] != "ok" else None)
        for m in metrics:
            table.add_row(m, f"{record['metrics'][m]:.4g}")
        table.add_row("wall_s", f"{record['timing']['wall_s']:.1f}")
        return table
    for column in ["seed", *identity, "status", *metrics, "wall_s"]:
        numeric = column in metrics or column in ("seed", "wall_s")
        table.add_column(column, justify="right" if numeric else "left", no_wrap=True)
    for record, cached in finished:
        values = [f"{record['metrics'][m]:.4g}" if m in record["metrics"] else "–" for m in metrics]
        table.add_row(str(record["seed"]), *[str(record.get(k)) for k in identity],
                      "cached" if cached else record["status"], *values, f"{record['timing']['wall_s']:.1f}",
                      style="red" if record["status"] != "ok" else None)
    table.caption = f"every metric: secbench report {out_dir} --scenario {records[0]['scenario']}"
    return table


def list_components(kind: str | None, console: Console | None = None) -> None:
    """Print the registered names (with one-line summaries) of one kind, or of all kinds."""
    console = console or stdout_console()
    valid = [*KIND_NAMES, "presets"]
    if kind is not None and kind not in valid:
        raise UnknownNameError("kind", kind, valid)
    for plural in [kind] if kind else valid:
        table = Table(title=plural, show_header=False, title_justify="left")
        entries = PRESETS.items() if plural == "presets" else registry.describe(KIND_NAMES[plural])
        for name, summary in entries:
            table.add_row(name, summary)
        if not table.row_count:
            table.add_row("(none yet)", "")
        console.print(table)


def print_model_cards(input_size: int, num_classes: int, fmt: str, names: list[str] | None = None,
                      console: Console | None = None, recipes: bool = False) -> None:
    """``secbench models``: the card table (or, with ``recipes``, the training recipes) as a rich table,
    markdown or CSV."""
    import pandas as pd

    from secbench.zoo import card_rows, recipe_rows

    if input_size < 16 or num_classes < 1:
        raise SecbenchError("--input-size must be at least 16 and --num-classes at least 1")
    frame = pd.DataFrame(recipe_rows(names) if recipes else card_rows(input_size, num_classes, names))
    if fmt == "csv":
        print(frame.to_csv(index=False), end="")
        return
    shown = pd.DataFrame({column: [_card_cell(column, v) for v in frame[column]] for column in frame.columns})
    if fmt == "md":
        print(shown.to_markdown(index=False))
        return
    title = ("training recipes (quick; --preset paper replaces them)" if recipes else
             f"model cards at {input_size}x{input_size}, {num_classes} classes (MACs = MAdds)")
    table = Table(title=title)
    for column in shown.columns:
        table.add_column(column, justify="left" if column in ("model", "paper", "source") else "right",
                         no_wrap=column != "source")
    for row in shown.itertuples(index=False):
        table.add_row(*row)
    (console or stdout_console()).print(table)


def _card_cell(column: str, value: Any) -> str:
    if value is None or value != value:  # None or NaN: no reference for this model
        return "–"
    if column.endswith("_pct"):
        return f"{value:+.2f}%"
    if column.endswith("_m"):
        return f"{value:,.3f}"
    return str(value)


def run_suite(suite_file: Path, *, launcher: str, jobs: int | None, threads: int | None, dry_run: bool, out_dir: Path,
              slurm: dict[str, Any], console: Console | None = None) -> int:
    """``secbench suite``: expand and validate every run, print the plan, and launch the runs not yet done;
    return the number that failed."""
    from secbench.engine import select_device
    from secbench.launch import launch_local, launch_submitit, slurm_executor
    from secbench.progress import RichProgress
    from secbench.suite import expand, load_suite, states

    console = console or stdout_console()
    errors = Console(stderr=True)
    suite = load_suite(suite_file)
    device = select_device(suite.device).type
    specs = expand(suite, device)
    state = states(specs, out_dir)
    if dry_run:
        console.print(status_table(specs, state, f"{suite_file}: {len(specs)} runs → {out_dir}"))
        return 0
    todo = [spec for spec in specs if state[spec.run_id][0] in ("pending", "failed")]
    errors.print(f"{suite_file}: {len(specs)} runs, {len(specs) - len(todo)} done or running elsewhere, "
                 f"{len(todo)} to run ({launcher})")
    if not todo:
        return 0
    check_writable(out_dir)
    executor = slurm_executor(out_dir / "slurm", **slurm) if launcher == "slurm" else None
    outcomes = []
    with RichProgress(errors) as progress, progress.task(f"suite {suite.scenario}", total=len(todo)) as bar:
        def done(outcome: tuple[str, str, str]) -> None:
            run_id, status, reason = outcome
            if status == "failed":
                errors.print(f"[red]run {run_id} failed: {reason}[/red]")
            bar.advance(1)

        if launcher == "local":
            workers = jobs or max(1, os.cpu_count() or 1)
            per_run = threads or max(1, (os.cpu_count() or 1) // workers)
            outcomes = launch_local(todo, out_dir, workers, device, per_run, done)
        else:
            outcomes = launch_submitit(todo, out_dir, device, executor, done)
    failed = sum(status == "failed" for _, status, _ in outcomes)
    console.print(f"{len(outcomes) - failed} of {len(outcomes)} runs finished; every record: secbench report {out_dir}")
    return failed


def print_status(out_dir: Path, suite_file: Path | None, fmt: str, console: Console | None = None) -> None:
    """``secbench status``: each run's state (done, failed, running, pending) with failure reasons, for a
    suite's runs or, without one, for every run the store or a live worker knows of."""
    import json

    from secbench import store
    from secbench.engine import select_device
    from secbench.runner import RunSpec
    from secbench.suite import expand, load_suite, running, states

    if not out_dir.is_dir():
        raise SecbenchError(f"no results folder {out_dir}")
    if suite_file is not None:
        suite = load_suite(suite_file)
        specs = expand(suite, select_device(suite.device).type)
    else:
        known = {r["config_hash"]: RunSpec(r["scenario"], r.get("scenario_version", 1), r.get("preset", ""), r["seed"],
                                           r["config"]) for r in store.load_records(out_dir)}
        specs = list(known.values())
    state = states(specs, out_dir)
    rows = [{"run_id": spec.run_id, "scenario": spec.scenario, "seed": spec.seed, "state": state[spec.run_id][0],
             "reason": state[spec.run_id][1]} for spec in specs]
    ids = {spec.run_id for spec in specs}
    rows += [{"run_id": p.name.removesuffix(".partial"), "scenario": p.name.split("-")[0], "seed": None,
              "state": "running", "reason": ""}
             for p in sorted(out_dir.glob("*.partial")) if p.name.removesuffix(".partial") not in ids and running(p)]
    if fmt == "json":
        print(json.dumps(rows, indent=2))
        return
    (console or stdout_console()).print(status_table(specs, state, f"{out_dir}: {len(rows)} runs", extra=rows[len(specs):]))


def status_table(specs: list[RunSpec], state: dict[str, tuple[str, str]], title: str,
                 extra: list[dict[str, Any]] = ()) -> Table:
    """One row per run: id, seed, the options that vary across the runs, state and failure reason."""
    varying = sorted({k for spec in specs for k, v in spec.config.items() if v != specs[0].config.get(k)})
    table = Table(title=title)
    for column in ("run", "seed", *varying, "state", "reason"):
        table.add_column(column, overflow="fold")
    colour = {"done": "green", "failed": "red", "running": "yellow", "pending": None}
    for spec in specs:
        name, reason = state[spec.run_id]
        table.add_row(spec.run_id, str(spec.seed), *[str(spec.config.get(k)) for k in varying], name, reason,
                      style=colour[name])
    for row in extra:
        table.add_row(row["run_id"], "?", *["?" for _ in varying], "running", "", style="yellow")
    counts = {name: sum(state[s.run_id][0] == name for s in specs) for name in colour}
    table.caption = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
    return table
