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


_ATTACKS = ("dataset", "model", "method", "attack")  # backdoor runs: method is the poisoning setup

VIEWS: dict[str, tuple[ReportView, ...]] = {
    # the papers' table: rows = watermark method, columns = the thief's attack
    "watermark": (
        ReportView("watermark success rate on the surrogate's outputs (NC ≥ threshold and amplitude ≥ "
                   "--min-amplitude)", rows=("method",), cols="attack", metrics="wm_success"),
        ReportView("the papers' rule, NC ≥ threshold alone: success on the surrogate's outputs", rows=("method",),
                   cols="attack", metrics="wm_success_nc"),
        ReportView("mean NC of the extracted watermark on the surrogate's outputs", rows=("method",), cols="attack",
                   metrics="wm_nc"),
        ReportView("mean amplitude of the expected mark in R's reading of the surrogate's outputs (1: full strength)",
                   rows=("method",), cols="attack", metrics="wm_amplitude"),
        ReportView("false positives (clean model, natural images; *_nc: by NC alone; none: surrogates of the "
                   "unmarked model)", rows=("method", "attack"), metrics="fp_*"),
        ReportView("invisibility (PSNR/SSIM of marked vs unmarked outputs) and the thief's task quality",
                   rows=("method", "attack"), metrics="psnr_wm,ssim_wm,api_success,surrogate_psnr,owner_psnr"),
    ),
    "backdoor": (
        ReportView("backdoor attacks: clean accuracy, attack success, stealthiness", rows=_ATTACKS,
                   metrics="clean_acc,clean_model_acc,asr,clean_model_asr,robust_acc,psnr_db,ssim,l2,linf"),
        ReportView("backdoor attacks: ASR after test-time transformations (asr_tf_*) and with victim augmentation "
                   "(asr_aug_*)", rows=_ATTACKS, metrics="asr,asr_tf_*,asr_aug_*"),
        ReportView("backdoor attacks: clean images sent to the target after the same transformations "
                   "(tf_target_clean_*; an asr_tf_* is the trigger's own only where this stays low)", rows=_ATTACKS,
                   metrics="tf_target_clean_*"),
        # runs with --defense (a view is shown only when some run has its metrics)
        ReportView("backdoor defenses: ASR after each defense (attacks x defenses)", rows=_ATTACKS, cols="defense",
                   metrics="asr_after"),
        ReportView("backdoor defenses: clean accuracy after each defense (attacks x defenses)", rows=_ATTACKS,
                   cols="defense", metrics="clean_acc_after"),
        ReportView("backdoor defenses: CA and ASR before and after, DER, the defense's wall time",
                   rows=(*_ATTACKS, "defense"),
                   metrics="clean_acc_before,asr_before,clean_acc_after,asr_after,robust_acc_after,der,defense_s"),
        ReportView("backdoor defenses: detection (Neural Cleanse nc_*)", rows=(*_ATTACKS, "defense"), metrics="nc_*"),
        ReportView("backdoor defenses: STRIP input filtering (strip_far, strip_frr, strip_auroc)",
                   rows=(*_ATTACKS, "defense"), metrics="strip_*"),
        ReportView("backdoor defenses: training-data filtering, removed vs poisoned images (Spectral Signatures "
                   "ss_*, Activation Clustering ac_*)", rows=(*_ATTACKS, "defense"), metrics="ss_*,ac_*"),
    ),
    # rows: the pretraining (method) for each source->target pair (dataset)
    "transfer": (
        ReportView("Few-label transfer, linear probe: target accuracy by labels per class (k)",
                   rows=("dataset", "method"), metrics="linear_k*"),
        ReportView("Few-label transfer, weighted kNN: target accuracy by labels per class (k)",
                   rows=("dataset", "method"), metrics="knn_k*"),
        ReportView("Few-label transfer, fine-tuning: target accuracy by labels per class (k)",
                   rows=("dataset", "method"), metrics="finetune_k*"),
        ReportView("Clustering quality of target features (k-means, one centre per class)",
                   rows=("dataset", "method"), metrics="cluster_*"),
        ReportView("Progressive selection: target accuracy after each labelling round (r)",
                   rows=("dataset", "method"), metrics="select_*"),
    ),
    # rows: the learner; columns: the noise (kind-rate) its training labels carried
    "noisy-labels": (
        ReportView("noisy-label segmentation: test mIoU by learner and training-label noise", rows=("dataset", "model",
                   "method"), cols="attack", metrics="miou"),
        ReportView("noisy-label segmentation: mIoU, OA, the clean-label upper bound (same network and recipe), the "
                   "realised noise rate", rows=("dataset",
                   "model", "method", "attack"), metrics="miou,oa,upper_bound_miou,upper_bound_oa,realised_noise_rate"),
        ReportView("PNAL's label correction against the clean labels (fractions of training points)",
                   rows=("dataset", "model", "method", "attack"),
                   metrics="kept_fraction,kept_label_acc,correction_precision,correction_recall,cluster_purity"),
        ReportView("per-class test IoU", rows=("dataset", "model", "method", "attack"), metrics="iou_*"),
    ),
    # rows: dataset and backbone (model); columns: the head (method), so DyHead and towers sit side by side
    "detection": (
        ReportView("detection: COCO AP (IoU 0.50:0.95) by backbone and head", rows=("dataset", "model"),
                   cols="method", metrics="ap"),
        ReportView("detection: AP, AP50, AP75 and AP by object size (small/medium/large), training time",
                   rows=("dataset", "model", "method"), metrics="ap,ap50,ap75,ap_s,ap_m,ap_l,train_s"),
        ReportView("detection robustness: AP under each corruption (rows: corruption and severity s1-s5; boxes "
                   "follow the pixels) by backbone and head", rows=("dataset", "model"), cols="method",
                   metrics="ap_*_s?"),
        ReportView("detection robustness: mean AP over severities per corruption, and over all of them",
                   rows=("dataset", "model", "method"),
                   metrics="ap_corrupt_subset_clean,ap_*_mean,mean_corrupted_ap"),
    ),
}
"""Scenario name → its default tables, in display order. Scenarios add theirs here."""
