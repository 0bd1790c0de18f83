"""Results as a long DataFrame (one row per run and metric), selection, and the pivot over seeds."""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from secbench.errors import SecbenchError, UnknownNameError
from secbench.store import IDENTITY_FIELDS, load_records

RUN_FIELDS = ("run_id", "status", "config_hash")
ID_COLUMNS = (*IDENTITY_FIELDS, *RUN_FIELDS)
COLUMNS = (*ID_COLUMNS, "metric", "value", "higher_is_better")
# Fields a selector or a pivot axis may name.
FIELDS = (*ID_COLUMNS, "metric")
# Fields that tell two configurations apart; the seed is what a pivot averages over.
CONFIG_FIELDS = tuple(f for f in IDENTITY_FIELDS if f != "seed")
MISSING = "-"  # pivot label of a field a run does not have (e.g. no attack); NaN labels break reshaping


def to_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """The ``ok`` records in long form: columns ``COLUMNS``, one row per numeric metric.

    Records with any other status are left out (:func:`not_ok` lists them). Non-numeric metric
    values (null, lists, strings) are left out too. A configuration stored twice for the same
    seed (a forced re-run) counts once, the latest record winning, so re-runs cannot inflate n.
    """
    rows = []
    for record in records:
        if record["status"] != "ok":
            continue
        identity = {field: record.get(field) for field in ID_COLUMNS}
        higher = record.get("higher_is_better") or {}
        rows.extend(
            {**identity, "metric": metric, "value": float(value), "higher_is_better": higher.get(metric)}
            for metric, value in (record["metrics"] or {}).items()
            if isinstance(value, int | float)
        )
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    return df.drop_duplicates(["config_hash", "seed", "metric"], keep="last", ignore_index=True)


def mixed_settings(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """The config settings, sorted, in which ``ok`` records of the same identity and seed differ (say a re-run
    with other ``--epochs`` beside the first run): tables cannot tell such runs apart and average them."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for record in records:
        if record["status"] == "ok":
            groups.setdefault(tuple(record.get(f) for f in IDENTITY_FIELDS), []).append(record.get("config") or {})
    differing: set[str] = set()
    for configs in groups.values():
        for key in set().union(*configs):
            if len({json.dumps(c.get(key), sort_keys=True, default=str) for c in configs}) > 1:
                differing.add(key)
    return sorted(differing)


def not_ok(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The records :func:`to_frame` leaves out: failed (or skipped) runs."""
    return [record for record in records if record["status"] != "ok"]


def load(results_dir: str | Path) -> pd.DataFrame:
    """:func:`to_frame` of the records in ``results_dir`` (raises SecbenchError if it is missing)."""
    return to_frame(load_records(results_dir))


def select(df: pd.DataFrame, **selectors: Any) -> pd.DataFrame:
    """The rows whose fields match every selector, e.g. ``select(df, model=["cnn-s", "cnn-m"], attack=None)``.

    A selector value is a scalar or a list (any of its values matches). ``None`` matches a missing
    value, so ``attack=None`` picks the runs that have no attack.
    """
    keep = pd.Series(True, index=df.index)
    for field, wanted in selectors.items():
        if field not in FIELDS:
            raise UnknownNameError("field", field, FIELDS)
        keep &= _matches(df[field], wanted)
    return df[keep]


def select_metrics(df: pd.DataFrame, pattern: str) -> pd.DataFrame:
    """The rows whose metric name matches the glob ``pattern`` (e.g. ``"asr_*"``), or any of several
    comma-separated globs (``"asr,asr_tf_*"``); an error if none do."""
    kept = df[_metric_mask(df, pattern)]
    if kept.empty:
        raise SecbenchError(f"no metric matches {pattern!r}; there are: {', '.join(sorted(df['metric'].unique()))}")
    return kept


def has_metrics(df: pd.DataFrame, pattern: str) -> bool:
    """Whether any metric name matches ``pattern`` (globs as in :func:`select_metrics`)."""
    return bool(_metric_mask(df, pattern).any())


def _metric_mask(df: pd.DataFrame, pattern: str) -> pd.Series:
    globs = [g.strip() for g in pattern.split(",") if g.strip()]
    return df["metric"].map(lambda name: any(fnmatch.fnmatchcase(name, g) for g in globs)).astype(bool)


def _matches(column: pd.Series, wanted: Any) -> pd.Series:
    values = list(wanted) if isinstance(wanted, list | tuple | set) else [wanted]
    present = [v for v in values if v is not None]
    hit = column.isin(present)
    return hit | column.isna() if len(present) < len(values) else hit


def default_rows(df: pd.DataFrame, cols: str = "metric") -> list[str]:
    """The configuration fields that vary in ``df`` (never the seed), else the model alone."""
    varying = [f for f in CONFIG_FIELDS if f != cols and df[f].nunique(dropna=False) > 1]
    return varying or ["scenario" if cols == "model" else "model"]


def pivot(
    df: pd.DataFrame, rows: Sequence[str] | None = None, cols: str | None = None, metric: str | None = None
) -> pd.DataFrame:
    """Mean, sample std (0 for a single run) and n of ``value`` over seeds, one cell per (rows, cols).

    Returns a frame indexed by ``rows`` with column levels (stat, value of ``cols``), stat one of
    mean, std, n; ``attrs["higher_is_better"]`` maps metric names to their direction. ``rows``
    defaults to :func:`default_rows`, ``cols`` to ``"metric"``; ``metric`` keeps that metric only.
    ``metric`` joins the rows when several metrics would otherwise share a cell, and a missing
    value is labelled ``MISSING``. Raises SecbenchError when a cell would mix configurations
    (a field that varies but is in neither rows nor cols).
    """
    if metric is not None:
        df = df[df["metric"] == metric]
    if df.empty:
        raise SecbenchError(f"no results{f' for metric {metric!r}' if metric else ''} to tabulate")
    cols = cols or "metric"
    rows = list(rows) if rows else default_rows(df, cols)
    for field in (*rows, cols):
        if field not in FIELDS:
            raise UnknownNameError("field", field, FIELDS)
    if cols in rows:
        raise SecbenchError(f"{cols!r} cannot be both a row and the column field")
    if cols != "metric" and "metric" not in rows and df["metric"].nunique() > 1:
        rows.append("metric")
    keys = [*rows, cols]
    _check_one_config_per_cell(df, keys)
    df = df.fillna(dict.fromkeys(keys, MISSING))

    stats = df.groupby(keys, dropna=False)["value"].agg(["mean", "std", "count"])
    stats = stats.rename(columns={"count": "n"}).astype({"n": "Int64"})  # Int64: NA, not NaN, in empty cells
    stats["std"] = stats["std"].where(stats["n"] > 1, 0.0)  # pandas gives NaN for one value
    order = pd.unique(df[cols])
    if cols == "metric":  # records store metrics by sorted name; read numbers as numbers (k2 before k10)
        order = sorted(order, key=_natural)
    table = stats.unstack(cols).reindex(columns=order, level=1)
    higher = df.dropna(subset=["higher_is_better"]).groupby("metric")["higher_is_better"].first()
    table.attrs["higher_is_better"] = {m: bool(h) for m, h in higher.items()}
    return table


def _natural(name: str) -> list[Any]:
    """Sort key that orders the digit runs of a name by value: ``eps2`` < ``eps16``, ``k4`` < ``k10``."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]


def _check_one_config_per_cell(df: pd.DataFrame, keys: list[str]) -> None:
    others = [f for f in CONFIG_FIELDS if f not in keys]
    if not others:
        return
    spread = df.groupby(keys, dropna=False)[others].nunique(dropna=False).max()
    mixed = [f for f in others if spread[f] > 1]
    if mixed:
        raise SecbenchError(
            f"a table cell would average over different values of {', '.join(mixed)}; "
            f"add {'it' if len(mixed) == 1 else 'them'} to the rows or select one value"
        )


def formatted(table: pd.DataFrame, pm: str = " ± ") -> pd.DataFrame:
    """A :func:`pivot` as text: ``"mean ± std"`` per cell ("" where empty) and a last column ``n``.

    Decimals follow the mean (3 below 100, else 1), so fractions and dB values both read well;
    ``n`` is one number, or ``lo-hi`` when the cells of a row rest on different counts.
    """
    mean, std = table["mean"].to_numpy(), table["std"].to_numpy()
    text = pd.DataFrame(
        [
            [_mean_std(m, s, pm) for m, s in zip(mrow, srow, strict=True)]
            for mrow, srow in zip(mean, std, strict=True)
        ],
        index=table.index,
        columns=table["mean"].columns,
    )
    text["n"] = [_count_range(row.dropna()) for _, row in table["n"].iterrows()]
    return text


def cells(table: pd.DataFrame) -> pd.DataFrame:
    """A :func:`pivot` in tidy form: one row per filled cell with the key fields (missing ones None
    again), mean, std, n and, when ``metric`` is a key, ``higher_is_better``."""
    keys = [*table.index.names, table.columns.names[-1]]
    tidy = table.stack(keys[-1])
    tidy = tidy[tidy["n"].notna()].reset_index()
    tidy[keys] = tidy[keys].replace(MISSING, None)
    if "metric" in tidy.columns:
        tidy["higher_is_better"] = tidy["metric"].map(table.attrs.get("higher_is_better", {}))
    return tidy


def _mean_std(mean: float, std: float, pm: str) -> str:
    if pd.isna(mean):
        return ""
    decimals = 3 if abs(mean) < 100 else 1
    return f"{mean:.{decimals}f}{pm}{std:.{decimals}f}"


def _count_range(counts: pd.Series) -> str:
    lo, hi = int(counts.min()), int(counts.max())
    return str(lo) if lo == hi else f"{lo}-{hi}"
