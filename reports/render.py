"""Pivots from :mod:`reports.frame` as text: a rich table, markdown, CSV, LaTeX, HTML or JSON.

pandas, rich and tabulate are imported inside the functions that use them: ``reports.cli`` reads
``FORMATS`` from here while the CLI is being assembled, and ``secbench --help`` must not pay for them.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from secbench.errors import UnknownNameError

if TYPE_CHECKING:
    import pandas as pd
    from rich.table import Table

    from reports.gate import ClaimResult

_LATEX_SPECIALS = str.maketrans(
    {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
    }
)


def render(table: pd.DataFrame, fmt: str, title: str | None = None) -> str:
    """One :func:`reports.frame.pivot` as ``fmt`` (one of ``FORMATS``).

    Text formats show ``mean ± std`` with an ``n`` column and ↑/↓ after metric names; ``csv`` and
    ``json`` give one entry per cell with ``mean``, ``std`` and ``n``. A ``title`` becomes a heading,
    or a leading ``table`` field in the machine-readable formats.
    """
    if fmt not in _RENDERERS:
        raise UnknownNameError("format", fmt, FORMATS)
    return _RENDERERS[fmt](table, title)


def render_all(tables: Mapping[str, pd.DataFrame], fmt: str) -> str:
    """Several titled pivots in one document; CSV stays one table and JSON one list."""
    if fmt == "csv":
        import pandas as pd

        return pd.concat([_tidy(table, title) for title, table in tables.items()]).to_csv(index=False)
    if fmt == "json":
        return _dumps([_json_object(table, title) for title, table in tables.items()])
    return "\n\n".join(render(table, fmt, title) for title, table in tables.items()) + "\n"


def build_table(table: pd.DataFrame, title: str | None = None) -> Table:
    """A rich Table of a pivot: key columns left, ``mean ± std`` cells and ``n`` right-aligned."""
    from rich.table import Table
    from rich.text import Text

    headers, body = _grid(table)
    n_keys = table.index.nlevels
    rich_table = Table(title=Text(title) if title else None)
    for i, header in enumerate(headers):
        rich_table.add_column(Text(header), justify="left" if i < n_keys else "right")
    for row in body:
        rich_table.add_row(*(Text(cell) for cell in row))  # Text: a label like "[x]" is not markup
    return rich_table


def verdict_table(results: Sequence[ClaimResult]) -> Table:
    """A rich Table of gate verdicts: claim, measured mean, op, threshold, runs, PASS/FAIL."""
    from rich.table import Table
    from rich.text import Text

    rich_table = Table(title="claims")
    rich_table.add_column("claim")
    for header in ("measured", "op", "threshold", "runs"):
        rich_table.add_column(header, justify="right")
    rich_table.add_column("result")
    for result in results:
        claim = result.claim
        measured = "-" if result.measured is None else f"{result.measured:.4g}"
        verdict = Text("PASS", style="bold green") if result.passed else Text("FAIL", style="bold red")
        rich_table.add_row(
            Text(claim.label), measured, claim.op, f"{claim.value:g}", str(result.n_runs), verdict
        )
    return rich_table


def _to_text(renderable: Any) -> str:
    """What rich would print for ``renderable``, without colours or wrapping."""
    from rich.console import Console

    console = Console(file=io.StringIO(), width=1000, color_system=None)
    console.print(renderable)
    return "\n".join(line.rstrip() for line in console.file.getvalue().splitlines())


def _grid(
    table: pd.DataFrame,
    *,
    pm: str = " ± ",
    arrows: tuple[str, str] = ("↑", "↓"),
    escape: Callable[[str], str] = str,
) -> tuple[list[str], list[list[str]]]:
    """Headers and body rows as strings; ``escape`` applies to labels only (cells are numbers)."""
    from reports.frame import formatted

    text = formatted(table, pm)
    higher = table.attrs.get("higher_is_better", {})

    def label(field: str, value: Any) -> str:
        name = escape(str(value))
        if field != "metric" or value not in higher:
            return name
        return f"{name} {arrows[0] if higher[value] else arrows[1]}"

    keys = list(text.index.names)
    headers = (
        [escape(k) for k in keys] + [label(table.columns.names[-1], c) for c in text.columns[:-1]] + ["n"]
    )
    body = [
        [label(k, v) for k, v in zip(keys, index if isinstance(index, tuple) else (index,), strict=True)]
        + cells
        for index, cells in zip(text.index, text.to_numpy().tolist(), strict=True)
    ]
    return headers, body


def _tabulate(table: pd.DataFrame, tablefmt: str, **grid: Any) -> str:
    from tabulate import tabulate

    headers, body = _grid(table, **grid)
    align = ["left"] * table.index.nlevels + ["right"] * (len(headers) - table.index.nlevels)
    return tabulate(body, headers, tablefmt=tablefmt, colalign=align, disable_numparse=True)


def _tidy(table: pd.DataFrame, title: str | None) -> pd.DataFrame:
    from reports.frame import cells

    tidy = cells(table)
    if title is not None:
        tidy.insert(0, "table", title)
    return tidy


def _json_object(table: pd.DataFrame, title: str | None) -> dict[str, Any]:
    tidy = _tidy(table, None)
    head = {} if title is None else {"table": title}
    cell_list = json.loads(tidy.to_json(orient="records", double_precision=15))
    return {**head, "rows": list(table.index.names), "cols": table.columns.names[-1], "cells": cell_list}


def _dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def _latex_escape(text: str) -> str:
    return text.translate(_LATEX_SPECIALS)


def _as_table(table: pd.DataFrame, title: str | None) -> str:
    return _to_text(build_table(table, title))


def _as_markdown(table: pd.DataFrame, title: str | None) -> str:
    body = _tabulate(table, "github")
    return f"## {title}\n\n{body}" if title else body


def _as_latex(table: pd.DataFrame, title: str | None) -> str:
    body = _tabulate(
        table, "latex_raw", pm=r" $\pm$ ", arrows=(r"$\uparrow$", r"$\downarrow$"), escape=_latex_escape
    )
    return f"% {title}\n{body}" if title else body


def _as_html(table: pd.DataFrame, title: str | None) -> str:
    from html import escape

    body = _tabulate(table, "html")
    return f"<h2>{escape(title)}</h2>\n{body}" if title else body


def _as_csv(table: pd.DataFrame, title: str | None) -> str:
    return _tidy(table, title).to_csv(index=False)


def _as_json(table: pd.DataFrame, title: str | None) -> str:
    return _dumps(_json_object(table, title))


_RENDERERS: dict[str, Callable[[pd.DataFrame, str | None], str]] = {
    "table": _as_table,
    "md": _as_markdown,
    "csv": _as_csv,
    "latex": _as_latex,
    "html": _as_html,
    "json": _as_json,
}
FORMATS = tuple(_RENDERERS)
