"""The paper-style tables ``secbench report DIR --scenario NAME`` shows when no layout is given.

Declared here, by scenario name, rather than on the scenario classes, so that reports keep to the
results store and never import torch or the scenarios. A scenario without an entry gets the
generic table (rows: the fields that vary, columns: metrics).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReportView:
    """The metrics matching the glob ``metrics`` (mean ± std over seeds), one row per combination of
    ``rows``, one column per value of ``cols``."""

    title: str
    rows: tuple[str, ...]
    cols: str = "metric"
    metrics: str = "*"


VIEWS: dict[str, tuple[ReportView, ...]] = {}
"""Scenario name → its default tables, in display order. Scenarios add theirs here."""
