"""The ``secbench report`` and ``secbench gate`` commands; ``secbench.cli`` adds them with ``add_command``.

pandas and rich are imported inside the commands so that assembling the CLI stays cheap.
"""

from __future__ import annotations

import functools
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from reports.render import FORMATS
from secbench.errors import SecbenchError

if TYPE_CHECKING:
    import pandas as pd

F = TypeVar("F", bound=Callable[..., Any])


def exits_on_user_error(command: F) -> F:
    """Turn a SecbenchError into ``error: <message>`` on one line of stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except SecbenchError as exc:
            click.echo(f"error: {' '.join(str(exc).split())}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


@click.command("report")
@click.argument("results_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--scenario", help="Only this scenario (default: one table per scenario).")
@click.option(
    "--rows", help="Comma-separated fields for the rows (default: the fields that vary, seed excluded)."
)
@click.option("--cols", help="Field whose values become columns.  [default: metric]")
@click.option("--metric", help="Only this metric.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE, not stdout."
)
@click.option(
    "--plot-eps", type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a PNG of accuracy against ε for every model and ε-bounded attack.",
)
@exits_on_user_error
def report(
    results_dir: Path,
    scenario: str | None,
    rows: str | None,
    cols: str | None,
    metric: str | None,
    fmt: str,
    output: Path | None,
    plot_eps: Path | None,
) -> None:
    """Mean ± std and n over seeds of the results in RESULTS_DIR."""
    from reports.frame import has_metrics, pivot, select, select_metrics
    from reports.render import build_table, render_all
    from reports.views import VIEWS

    df = _load_ok(results_dir)
    if df.empty:
        raise SecbenchError(f"no results in {results_dir}")
    if plot_eps is not None:
        from reports.figures import eps_curves

        click.echo(f"wrote {eps_curves(df, plot_eps)}", err=True)
    for field, value in (("scenario", scenario), ("metric", metric)):
        if value is not None:
            known = ", ".join(map(str, df[field].unique()))
            df = select(df, **{field: value})
            if df.empty:
                raise SecbenchError(f"no results for {field} {value!r} in {results_dir}; there are: {known}")
    row_fields = [f.strip() for f in rows.split(",") if f.strip()] if rows else None
    views = VIEWS.get(scenario or "", ()) if not (rows or cols or metric) else ()
    views = tuple(view for view in views if has_metrics(df, view.metrics))  # e.g. no defense runs yet
    # Scenarios measure different metrics, so each gets its own table unless the user mixes them.
    if views:
        tables = {view.title: pivot(select_metrics(df, view.metrics), rows=view.rows, cols=view.cols)
                  for view in views}
    elif scenario is None and "scenario" not in {*(row_fields or ()), cols}:
        groups = {name: group for name, group in df.groupby("scenario", sort=False)}
        tables = {name: pivot(group, rows=row_fields, cols=cols) for name, group in groups.items()}
    else:
        tables = {scenario or "all scenarios": pivot(df, rows=row_fields, cols=cols)}

    if output is not None:
        output.write_text(render_all(tables, fmt), encoding="utf-8")
        click.echo(f"wrote {len(tables)} table(s) to {output}", err=True)
    elif fmt == "table":  # let rich fit the terminal and colour it
        from secbench.console import stdout_console

        console = stdout_console()
        for name, table in tables.items():
            console.print(build_table(table, name))
    else:
        click.echo(render_all(tables, fmt), nl=False)


@click.command("gate")
@click.argument("claims_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--results",
    "results_dir",
    default="runs",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
)
@click.option(
    "--junit", type=click.Path(dir_okay=False, path_type=Path), help="Also write JUnit XML to FILE."
)
@exits_on_user_error
def gate(claims_file: Path, results_dir: Path, junit: Path | None) -> None:
    """Check CLAIMS_FILE against the results: exit 0 if every claim holds, 1 if one fails, 2 on errors."""
    from reports.gate import evaluate, load_claims, write_junit
    from reports.render import verdict_table
    from secbench.console import stdout_console

    claims = load_claims(claims_file)  # a broken file is an error (2) even if results are missing
    results = evaluate(claims, _load_ok(results_dir))
    if junit is not None:
        write_junit(results, junit)
    stdout_console().print(verdict_table(results))
    failed = [result for result in results if not result.passed]
    for result in failed:
        click.echo(f"FAIL {result.claim.label}: {result.reason}")
    click.echo(f"{len(results) - len(failed)}/{len(results)} claims passed")
    sys.exit(1 if failed else 0)


def _load_ok(results_dir: Path) -> pd.DataFrame:
    """The ok results in long form, after notes on stderr about the runs left out and about runs that tables
    would average although their configurations differ."""
    from reports.frame import mixed_settings, not_ok, to_frame
    from secbench.store import load_records

    records = load_records(results_dir)
    left_out = Counter(record["status"] for record in not_ok(records))
    if left_out:
        counts = ", ".join(f"{n} {status}" for status, n in left_out.items())
        click.echo(f"note: skipped {counts} run(s)", err=True)
    if mixed := mixed_settings(records):
        click.echo(f"note: some runs of the same identity and seed differ in {', '.join(mixed)}, and their cells "
                   "average them; keep such variants in separate results folders", err=True)
    return to_frame(records)
