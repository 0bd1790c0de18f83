"""Figures rendered from results (never from a live run): accuracy against the attack budget."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from secbench.errors import SecbenchError
from secbench.plots import line_plot

_EPS_METRIC = re.compile(r"^robust_acc_eps(?P<eps>[0-9.]+)$")


def eps_curves(df: pd.DataFrame, path: Path) -> Path:
    """One line per (model, attack): mean accuracy over seeds at each ε of the ``robust_acc_eps*`` metrics.

    ``df`` is the long frame of :func:`reports.frame.load`; ε is read from the metric name (1/255 units).
    """
    eps = df["metric"].str.extract(_EPS_METRIC)["eps"].astype(float)
    points = df.assign(eps=eps).dropna(subset=["eps"])
    if points.empty:
        raise SecbenchError("no robust_acc_eps* metrics to plot; run `secbench run robustness` with an ε-bounded attack")
    mean = points.groupby(["model", "attack", "eps"], dropna=False)["value"].mean().reset_index()
    grid = sorted(mean["eps"].unique())
    curves = {}
    for (model, attack), group in mean.groupby(["model", "attack"], dropna=False):
        by_eps = dict(zip(group["eps"], group["value"], strict=True))
        curves[f"{model} {attack}"] = [by_eps.get(e, float("nan")) for e in grid]
    return line_plot(grid, curves, path, xlabel="L∞ ε (×1/255)", ylabel="accuracy (mean over seeds)",
                     title="accuracy under attack")
