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
    ``rows``, one column per value of ``cols``. ``metrics`` may list several globs, comma-separated."""

    title: str
    rows: tuple[str, ...]
    cols: str = "metric"
    metrics: str = "*"


_ATTACKS = ("dataset", "model", "attack")

VIEWS: dict[str, tuple[ReportView, ...]] = {
    "backdoor": (
        ReportView("backdoor attacks: clean accuracy, attack success, stealthiness", rows=_ATTACKS,
                   metrics="clean_acc,clean_model_acc,asr,clean_model_asr,robust_acc,psnr_db,ssim,l2,linf"),
        ReportView("backdoor attacks: ASR after test-time transformations (asr_tf_*) and with victim augmentation "
                   "(asr_aug_*)", rows=_ATTACKS, metrics="asr,asr_tf_*,asr_aug_*"),
    ),
}
"""Scenario name → its default tables, in display order. Scenarios add theirs here."""
