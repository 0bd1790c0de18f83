"""Reports: results records → long DataFrame → mean ± std over seeds → tables and a CI gate.

Reads the results store only; never imports torch, attacks, defenses or scenarios. The names
from ``frame`` and ``gate`` load on first use, so ``import reports.cli`` (and ``secbench --help``)
does not import pandas.

    df = reports.load("runs")
    print(reports.render(reports.pivot(reports.select(df, scenario="clean")), "md"))
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# render.py keeps pandas out of its top level, so it loads eagerly; importing it here also keeps
# the name ``reports.render`` bound to the function rather than to the submodule.
from reports.render import FORMATS, build_table, render, render_all, verdict_table

_LAZY = {
    **dict.fromkeys(["cells", "formatted", "load", "not_ok", "pivot", "select", "to_frame"], "reports.frame"),
    **dict.fromkeys(
        ["Claim", "ClaimResult", "evaluate", "load_claims", "parse_claims", "write_junit"], "reports.gate"
    ),
}
__all__ = ["FORMATS", "build_table", "render", "render_all", "verdict_table", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'reports' has no attribute {name!r}")
    return getattr(import_module(_LAZY[name]), name)
