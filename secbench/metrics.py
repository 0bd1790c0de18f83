"""Image-quality and verification metrics, batched in torch: PSNR, SSIM, NC, success rate, AUROC; and COCO box
AP (pycocotools) for detection.

Per-image metrics take ``(N, ...)`` tensors and return ``(N,)``. They compute in float64 on the
inputs' device: they are reported numbers, float64 costs little at these sizes, and it removes
the ``E[x²] - E[x]²`` cancellation that makes float32 SSIM drift from scikit-image's. They stay
differentiable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

PSNR_CAP_DB = 100.0  # PSNR of identical images, instead of inf, so that means over images stay finite
SSIM_WINDOW = 11  # scikit-image's Gaussian window: 2 * int(3.5 * sigma + 0.5) + 1 taps for sigma 1.5
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(f"expected two (N, ...) tensors of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image of ``(N, ...)`` tensors: ``(N,)`` float64.

    ``10 log10(data_range² / MSE)`` over all of an image's pixels and channels, as scikit-image's
    ``peak_signal_noise_ratio``; capped at :data:`PSNR_CAP_DB` (identical images give the cap, not inf).
    """
    _check_pair(a, b)
    mse = (a.double() - b.double()).square().flatten(1).mean(1)
    floor = data_range**2 * 10 ** (-PSNR_CAP_DB / 10)
    return 10 * torch.log10(data_range**2 / mse.clamp_min(floor))


def _gaussian_window(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    offsets = torch.arange(SSIM_WINDOW, dtype=dtype, device=device) - SSIM_WINDOW // 2
    window = torch.exp(-0.5 * (offsets / SSIM_SIGMA) ** 2)
    return window / window.sum()


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity per image of ``(N, C, H, W)`` tensors (H, W ≥ 11): ``(N,)`` float64 in [-1, 1].

    scikit-image's ``structural_similarity(..., channel_axis=0, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=data_range)``: local statistics under an 11×11 Gaussian
    window (σ = 1.5), K1 = 0.01, K2 = 0.03, the SSIM map averaged over the positions where the
    window fits inside the image and then over channels. scikit-image filters the padded image and
    crops the 5-pixel border before averaging, so padding never reaches the mean and an unpadded
    ('valid') convolution gives the same number.
    """
    _check_pair(a, b)
    n, c, h, w = a.shape
    if min(h, w) < SSIM_WINDOW:
        raise ValueError(f"ssim needs images of at least {SSIM_WINDOW}×{SSIM_WINDOW}, got {h}×{w}")
    x, y = a.double(), b.double()
    # the five local moments of every channel, blurred together by one separable depthwise convolution
    moments = torch.cat([x, y, x * x, y * y, x * y], 1)
    window = _gaussian_window(moments.dtype, moments.device)
    groups = moments.shape[1]
    blurred = F.conv2d(moments, window.view(1, 1, -1, 1).expand(groups, 1, -1, 1), groups=groups)
    blurred = F.conv2d(blurred, window.view(1, 1, 1, -1).expand(groups, 1, 1, -1), groups=groups)
    mu_x, mu_y, xx, yy, xy = blurred.split(c, 1)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean(dim=(1, 2, 3))


def normalized_correlation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """NC = ⟨x, y⟩ / (‖x‖ ‖y‖) per item of ``(N, ...)`` tensors: ``(N,)`` float64 in [-1, 1].

    Not mean-centred (the watermark literature's NC). When either item is all zeros the ratio is
    undefined and NC is 0: a blank extraction carries no evidence of any watermark.
    """
    _check_pair(x, y)
    u, v = x.double().flatten(1), y.double().flatten(1)
    norms = u.norm(dim=1) * v.norm(dim=1)
    defined = norms > 0
    # divide only where defined, so that a zero vector gives 0 and a finite gradient rather than NaN
    return torch.where(defined, (u * v).sum(1) / norms.where(defined, 1.0), 0.0)


def success_rate(nc: torch.Tensor, threshold: float = 0.95) -> float:
    """Fraction of ``nc`` values ≥ ``threshold`` (NaN counts as a failure)."""
    if nc.numel() == 0:
        raise ValueError("success_rate of no values is undefined")
    return (nc >= threshold).double().mean().item()


def auroc(positive_scores: torch.Tensor, negative_scores: torch.Tensor) -> float:
    """Area under the ROC curve for ``positive_scores`` being higher than ``negative_scores``.

    The Mann-Whitney statistic from the ranks of all scores with ties at their mid-rank, i.e.
    P(pos > neg) + ½ P(pos = neg): 1.0 when every positive scores above every negative, 0.5 for
    indistinguishable scores; equal to ``sklearn.metrics.roc_auc_score``.
    """
    pos, neg = positive_scores.double().flatten(), negative_scores.double().flatten()
    if pos.numel() == 0 or neg.numel() == 0:
        raise ValueError("auroc needs at least one positive and one negative score")
    scores = torch.cat([pos, neg])
    if scores.isnan().any():
        raise ValueError("auroc scores contain NaN")
    _, group, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    # 1-based ranks: a group of tied scores occupies ranks (end - count, end], whose mean is its mid-rank
    ends = counts.cumsum(0).double()
    ranks = (ends - (counts - 1) / 2)[group]
    n_pos, n_neg = pos.numel(), neg.numel()
    u_statistic = ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2
    return (u_statistic / (n_pos * n_neg)).item()


def confusion_matrix(predicted: torch.Tensor, truth: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(K, K)`` int64 counts, rows: true class, columns: predicted class, over all elements."""
    index = truth.reshape(-1).long() * num_classes + predicted.reshape(-1).long()
    return torch.bincount(index, minlength=num_classes * num_classes).view(num_classes, num_classes)


def segmentation_scores(predicted: torch.Tensor, truth: torch.Tensor, num_classes: int) -> dict[str, torch.Tensor]:
    """Overall accuracy ``oa``, per-class ``iou`` ``(K,)`` (NaN for a class absent from both) and ``miou``,
    the mean over the classes present; from the confusion matrix, as S3DIS and ScanNet report them."""
    confusion = confusion_matrix(predicted, truth, num_classes).double()
    hits = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - hits
    iou = torch.where(union > 0, hits / union.clamp_min(1), torch.full_like(hits, float("nan")))
    return {"oa": hits.sum() / confusion.sum(), "iou": iou, "miou": iou.nanmean()}


COCO_AP_METRICS = ("ap", "ap50", "ap75", "ap_s", "ap_m", "ap_l")  # COCOeval.stats[0:6], in its order


def coco_ap(
    truth: Sequence[tuple[Any, Any]],
    detections: Sequence[tuple[Any, Any, Any]],
    *,
    area_thresholds: tuple[float, float] = (32.0, 96.0),
) -> dict[str, float]:
    """COCO box AP with pycocotools: AP (IoU 0.50:0.95), AP50, AP75 and AP for small / medium / large boxes.

    ``truth``: per image ``(boxes (G, 4), classes (G,))``; ``detections``: per image ``(boxes (D, 4), scores (D,),
    classes (D,))``; boxes ``(x1, y1, x2, y2)`` in pixels, arrays or tensors. A box is small below
    ``area_thresholds[0]²`` px² and large above ``area_thresholds[1]²`` (COCO's 32 and 96 for ~640-px images).
    Values lie in [0, 1]; a size class without any ground-truth box is left out (COCOeval's -1).
    pycocotools' printing is silenced.
    """
    import contextlib
    import io

    import numpy as np
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(truth) != len(detections):
        raise ValueError(f"{len(truth)} images of ground truth but {len(detections)} of detections")
    images, annotations, results, categories = [], [], [], set()
    for i, ((boxes, classes), (d_boxes, d_scores, d_classes)) in enumerate(zip(truth, detections, strict=True)):
        images.append({"id": i + 1})
        for box, cls in zip(np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(classes).reshape(-1), strict=True):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(cls) + 1,
                                "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": 0})
            categories.add(int(cls) + 1)
        for box, score, cls in zip(np.asarray(d_boxes, np.float64).reshape(-1, 4), np.asarray(d_scores).reshape(-1),
                                   np.asarray(d_classes).reshape(-1), strict=True):
            results.append({"image_id": i + 1, "category_id": int(cls) + 1, "score": float(score),
                            "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
            categories.add(int(cls) + 1)
    if not annotations:
        raise ValueError("COCO AP needs at least one ground-truth box")
    if not results:  # loadRes rejects an empty list; nothing detected is AP 0 wherever there is ground truth
        return {name: 0.0 for name in COCO_AP_METRICS}
    small, large = (t * t for t in area_thresholds)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations,
                      "categories": [{"id": c} for c in sorted(categories)]}
        gt.createIndex()
        evaluation = COCOeval(gt, gt.loadRes(results), iouType="bbox")
        evaluation.params.areaRng = [[0, 1e10], [0, small], [small, large], [large, 1e10]]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {name: float(v) for name, v in zip(COCO_AP_METRICS, evaluation.stats[:6], strict=True) if v >= 0}
