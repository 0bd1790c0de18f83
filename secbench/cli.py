"""The ``secbench`` command line. Heavy modules (torch, pandas, scenarios) load inside commands,
so ``secbench --help`` and ``--version`` stay instant."""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import fields
from pathlib import Path
from typing import Any

import click

from reports.cli import gate, report
from secbench import __version__
from secbench.config import field_types, option_flag
from secbench.errors import SecbenchError


def _parse_seeds(seed: int | None, seeds: str | None) -> list[int]:
    if seed is not None and seeds is not None:
        raise SecbenchError("give either --seed or --seeds, not both")
    if seeds is None:
        return [0 if seed is None else seed]
    try:
        parsed = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError as exc:
        raise SecbenchError(f"--seeds takes comma-separated integers like 0,1,2, got {seeds!r}") from exc
    if not parsed:
        raise SecbenchError("--seeds is empty; give e.g. --seeds 0,1,2")
    return list(dict.fromkeys(parsed))


def _option_for(name: str, annotation: type, default: Any, help_text: str) -> click.Option:
    """A click option for one scenario config field; unset options stay None so presets show through."""
    flag = option_flag(name)
    default_text = "[quick: " + ("auto" if default is None else str(default)) + "]"
    shown = f"{help_text}  {default_text}" if help_text else default_text
    if annotation is bool:
        return click.Option([f"{flag}/--no-{flag[2:]}", name], default=None, help=shown)
    return click.Option([flag, name], type=annotation, default=None, show_default=False, help=shown)


def _run_command(scenario_cls: type) -> click.Command:
    kinds = field_types(scenario_cls.Config)
    options = [_option_for(f.name, kinds[f.name], f.default, f.metadata.get("help", ""))
               for f in fields(scenario_cls.Config)]
    options += [
        click.Option(["--preset"], default="quick", show_default=True, help="smoke | quick | paper"),
        click.Option(["--seed"], type=int, default=None, help="One seed (default 0)."),
        click.Option(["--seeds"], default=None, help="Several seeds, e.g. 0,1,2."),
        click.Option(["--device"], default="auto", show_default=True, help="auto | cpu | cuda"),
        click.Option(["--out"], type=click.Path(file_okay=False), default="runs", show_default=True,
                     help="Results folder (results.jsonl and one artifact folder per run)."),
        click.Option(["--force"], is_flag=True, help="Re-run even when a finished record with this config exists."),
    ]

    def callback(preset: str, seed: int | None, seeds: str | None, device: str, out: str, force: bool,
                 **overrides: Any) -> None:
        from secbench.commands import run_scenario

        failed = run_scenario(scenario_cls, preset=preset, seeds=_parse_seeds(seed, seeds), device=device,
                              out_dir=Path(out), force=force, overrides=overrides)
        if failed:
            sys.exit(1)

    doc = (scenario_cls.__doc__ or "").strip()
    return click.Command(scenario_cls.name, params=options, callback=callback, help=doc,
                         short_help=doc.splitlines()[0] if doc else None)


class _ScenarioGroup(click.Group):
    """``secbench run SCENARIO``: one subcommand per registered scenario, options from its Config."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from secbench import registry

        return registry.list_names("scenario")

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        from secbench import registry

        return _run_command(registry.get("scenario", name).load())


INTERNAL_ERROR = 70  # sysexits' EX_SOFTWARE: distinct from a user error (2) and a failed run or claim (1)


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      file: Any = None, line: str | None = None) -> None:
    click.echo(f"warning: {message}", err=True)


class _Secbench(click.Group):
    """The top-level group: a user error prints one line and exits 2; nothing prints a traceback."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations phones home on import otherwise
        with warnings.catch_warnings():  # restored afterwards: tests call main in-process
            warnings.showwarning = _one_line_warning
            try:
                code = super().main(args, prog_name or "secbench", complete_var, standalone_mode=False, **extra)
            except click.UsageError as exc:
                hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
                click.echo(f"error: {exc.format_message()}{hint}", err=True)
                sys.exit(2)
            except SecbenchError as exc:
                click.echo(f"error: {exc}", err=True)
                sys.exit(2)
            except (click.Abort, KeyboardInterrupt):  # click turns Ctrl-C into Abort
                click.echo("interrupted: finished runs are saved, the interrupted one left no record", err=True)
                sys.exit(130)
            except Exception as exc:  # a bug, not the user's input: one line and its own code, the traceback on demand
                if os.environ.get("SECBENCH_TRACEBACK"):
                    raise
                click.echo(f"error: internal error {type(exc).__name__}: {' '.join(str(exc).split())[:300]}; this is a "
                           "secbench bug: please report it with the output of SECBENCH_TRACEBACK=1 secbench ...", err=True)
                sys.exit(INTERNAL_ERROR)
            sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=_Secbench, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="secbench")
def cli() -> None:
    """secbench: security and robustness benchmark for deep vision models."""


@cli.group(cls=_ScenarioGroup)
def run() -> None:
    """Run a scenario: secbench run SCENARIO [--preset smoke|quick|paper] [options]."""


@cli.command("list")
@click.argument("kind", required=False)
def list_(kind: str | None) -> None:
    """List scenarios, attacks, defenses, models, datasets or presets with one-line descriptions."""
    from secbench.commands import list_components

    list_components(kind)


@cli.command("models")
@click.option("--input-size", type=int, default=224, show_default=True, help="Square input side, in pixels.")
@click.option("--num-classes", type=int, default=1000, show_default=True)
@click.option("--models", "names", default=None, help="Comma-separated names (default: every model).")
@click.option("--format", "fmt", type=click.Choice(["table", "md", "csv"]), default="table", show_default=True)
@click.option("--recipes", is_flag=True, help="Show each model's default training recipe instead.")
def models(input_size: int, num_classes: int, names: str | None, fmt: str, recipes: bool) -> None:
    """Model cards: params and MACs of every model against the official code and the paper."""
    from secbench.commands import print_model_cards

    print_model_cards(input_size, num_classes, fmt, names.split(",") if names else None, recipes=recipes)


@cli.command("suite")
@click.argument("suite_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--launcher", type=click.Choice(["local", "slurm"]), default="local", show_default=True,
              help="local: a process pool on this machine; slurm: one submitit job array task per run")
@click.option("--jobs", type=click.IntRange(1, 1024), default=None, help="local: parallel runs [default: CPU cores]")
@click.option("--threads", type=click.IntRange(1, 1024), default=None,
              help="local: torch threads per run [default: cores // jobs, so the pool never oversubscribes]")
@click.option("--dry-run", is_flag=True, help="Print the expanded runs (id, options, state) and exit.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default="runs", show_default=True)
@click.option("--partition", default=None, help="slurm: partition")
@click.option("--time-min", type=click.IntRange(1), default=60, show_default=True, help="slurm: time limit per run")
@click.option("--gpus", type=click.IntRange(0), default=0, show_default=True, help="slurm: GPUs per run")
@click.option("--cpus", type=click.IntRange(1), default=2, show_default=True, help="slurm: CPUs per run")
@click.option("--mem-gb", type=click.IntRange(1), default=8, show_default=True, help="slurm: memory per run")
@click.option("--array-parallelism", type=click.IntRange(1), default=16, show_default=True,
              help="slurm: array tasks running at once")
def suite(suite_file: Path, launcher: str, jobs: int | None, threads: int | None, dry_run: bool, out: Path,
          partition: str | None, time_min: int, gpus: int, cpus: int, mem_gb: int, array_parallelism: int) -> None:
    """Run every run of SUITE_FILE (a scenario, options, a grid and seeds) not yet done in --out."""
    from secbench.commands import run_suite

    slurm = {"partition": partition, "time_min": time_min, "gpus": gpus, "cpus": cpus, "mem_gb": mem_gb,
             "parallelism": array_parallelism}
    if run_suite(suite_file, launcher=launcher, jobs=jobs, threads=threads, dry_run=dry_run, out_dir=out, slurm=slurm):
        sys.exit(1)


@cli.command("status")
@click.argument("results_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--suite", "suite_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The suite whose runs to show (default: every run the folder knows of).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def status(results_dir: Path, suite_file: Path | None, fmt: str) -> None:
    """Done, failed, running and pending runs in RESULTS_DIR, with failure reasons."""
    from secbench.commands import print_status

    print_status(results_dir, suite_file, fmt)


cli.add_command(report)
cli.add_command(gate)
main = cli
