"""ATSS, a one-stage dense detector, with an FPN on a zoo backbone and either GN towers or Dynamic Head.

- ATSS: Zhang et al., "Bridging the Gap Between Anchor-based and Anchor-free Detection via Adaptive Training
  Sample Selection", CVPR 2020, arXiv 1912.02424.
- Dynamic Head: Dai et al., CVPR 2021, arXiv 2106.08322 (the block is :class:`secbench.models.dyhead.DyHead`,
  used as is); its ATSS config (``shared/reference/architectures.md`` §4.2) drops the towers
  (``ATSS.NUM_CONVS: 0``) and keeps 1×1 ``cls_logits``, ``bbox_pred`` and ``centerness`` with per-level scales.

Pieces, in data-flow order:

* :class:`PyramidBackbone`: the C3, C4, C5 maps (strides 8, 16, 32) of a registered classifier
  (``resnet18``, ``preact-resnet18``, ``micronet-m*``, ``mobile-former-*``). The stages are picked by the
  stride measured on a dummy input, not by name, so a change of a family's stem cannot silently shift the
  pyramid. The CIFAR ResNets keep a stride-1 stem at every size; for them the detector swaps in the
  ImageNet stem (7×7 stride-2 conv, BN, ReLU, 3×3 stride-2 max-pool) on its own copy, which is the ResNet
  that FPN detectors use and the only way to reach stride 32 in four stages.
* :class:`FPN`: lateral 1×1 + top-down nearest upsampling + 3×3 outputs on C3–C5; P6 a stride-2 3×3 conv of
  P5 and P7 one of ReLU(P6), as ATSS/RetinaNet (``use_P5``): five levels P3–P7.
* :class:`TowerHead` (ATSS: 4 × conv3×3-GN-ReLU per branch, 3×3 predictors) or :class:`DyHeadHead`
  (``blocks`` DyHead blocks, then 1×1 predictors); both end in per-level learnable scales on the box deltas.
* :class:`ATSS` (the model): one square anchor per location, side ``anchor_scale × stride``; ``forward`` gives
  the dense :class:`DenseOutput`; :func:`atss_loss` assigns targets (top-k = 9 by centre distance per level,
  IoU ≥ mean + std of the candidates, centre inside the box) and sums focal (α 0.25, γ 2), GIoU (weight 2,
  centerness-weighted) and centerness BCE; :meth:`ATSS.detect` decodes, keeps scores above a threshold and
  runs per-class NMS (``torchvision.ops.batched_nms``).

Boxes are ``(x1, y1, x2, y2)`` in input pixels throughout. Box deltas are the standard anchor encoding
``(dx, dy, dw, dh)`` with weights (10, 10, 5, 5), as ATSS's own code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms, box_iou, generalized_box_iou_loss, sigmoid_focal_loss

from secbench.errors import SecbenchError, UnknownNameError
from secbench.models.dyhead import DyHead
from secbench.registry import create_model, register

__all__ = ["ATSS", "BACKBONES", "DenseOutput", "FPN", "HEADS", "PyramidBackbone", "atss_assign", "atss_loss",
           "decode", "encode", "make_anchors"]

STRIDES = (8, 16, 32, 64, 128)  # P3-P7
HEADS = ("towers", "dyhead")
# backbone name pattern -> how its trunk runs: "conv" (a ConvClassifier's ``stages``) or "mobile-former"
BACKBONES: dict[str, str] = {"resnet18": "conv", "preact-resnet18": "conv", "micronet-m0": "conv",
                             "micronet-m1": "conv", "micronet-m2": "conv", "micronet-m3": "conv",
                             **{f"mobile-former-{v}": "mobile-former" for v in
                                ("26m", "52m", "96m", "151m", "214m", "294m", "508m")}}
_DELTA_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
_MAX_DWH = math.log(1000.0 / 16)  # the usual clamp on dw, dh before exp
_PRIOR = 0.01  # focal loss's prior: the classifier starts predicting 1% foreground


# ---------------------------------------------------------------- backbone


def _imagenet_stem(width: int, preact: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)]
    if not preact:  # a pre-activation network's blocks start with BN-ReLU
        layers += [nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.MaxPool2d(kernel_size=3, stride=2, padding=1))


class PyramidBackbone(nn.Module):
    """C3, C4, C5 of a zoo classifier: ``(N, 3, H, W)`` in [0, 1] → three maps at strides 8, 16, 32.

    ``channels`` gives their widths. Everything after C5 (pooling, classifier) is dropped.
    """

    def __init__(self, name: str, img_size: int) -> None:
        super().__init__()
        if name not in BACKBONES:
            raise UnknownNameError("detector backbone", name, BACKBONES)
        self.kind = BACKBONES[name]
        model = create_model(name, num_classes=2, img_size=img_size)
        self.normalize = model.normalize
        if self.kind == "conv":
            stages = list(model.stages.children())
        else:  # Mobile-Former: the stem, then blocks that carry (map, tokens)
            stages = [model.stem, *model.blocks]
            self.tokens = model.tokens
        self.stages = nn.ModuleList(stages)
        strides = self._strides(img_size)
        if name.endswith("resnet18") and strides[0] == 1:  # the CIFAR stem: see the module docstring
            self.stages[0] = _imagenet_stem(model.stages.stem[0].out_channels, name.startswith("preact"))
            strides = self._strides(img_size)
        taps = [max((i for i, s in enumerate(strides) if s == target), default=None) for target in (8, 16, 32)]
        if None in taps:
            raise SecbenchError(f"backbone {name} at {img_size} px has stage strides {strides}, not all of 8, 16, 32: "
                                f"use a larger image size (at least 64)")
        self.taps = tuple(int(t) for t in taps)  # type: ignore[arg-type]
        del self.stages[self.taps[-1] + 1 :]
        with torch.no_grad():
            self.channels = tuple(int(c.shape[1]) for c in self._run(torch.zeros(1, 3, img_size, img_size)))

    def _outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.normalize(x)
        outs = []
        if self.kind == "conv":
            for stage in self.stages:
                x = stage(x)
                outs.append(x)
            return outs
        x = self.stages[0](x)
        outs.append(x)
        z = self.tokens.repeat(x.shape[0], 1, 1)  # (N, M, d), as MobileFormer.features
        for block in self.stages[1:]:
            x, z = block(x, z)
            outs.append(x)
        return outs

    def _strides(self, img_size: int) -> list[int]:
        was = self.training
        self.eval()
        with torch.no_grad():
            sizes = [o.shape[-1] for o in self._outputs(torch.zeros(1, 3, img_size, img_size))]
        self.train(was)
        return [round(img_size / s) for s in sizes]

    def _run(self, x: torch.Tensor) -> list[torch.Tensor]:
        was = self.training
        self.eval()
        outs = self._outputs(x)
        self.train(was)
        return [outs[t] for t in self.taps]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = self._outputs(x)
        return [outs[t] for t in self.taps]


# ---------------------------------------------------------------- FPN


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2)
    nn.init.kaiming_uniform_(conv.weight, a=1)  # detectron2's FPN init ("caffe2 xavier")
    nn.init.zeros_(conv.bias)
    return conv


class FPN(nn.Module):
    """Feature pyramid: C3–C5 ``(N, C_i, H_i, W_i)`` → P3–P7, each ``(N, channels, H_l, W_l)`` with
    ``H_{l+1} = ceil(H_l / 2)`` (P6 and P7 from stride-2 3×3 convs on P5, as ATSS)."""

    def __init__(self, in_channels: Sequence[int], channels: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(_conv(c, channels, 1) for c in in_channels)
        self.output = nn.ModuleList(_conv(channels, channels, 3) for _ in in_channels)
        self.p6 = _conv(channels, channels, 3, stride=2)
        self.p7 = _conv(channels, channels, 3, stride=2)

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral, features, strict=True)]
        for i in range(len(laterals) - 1, 0, -1):  # top-down: coarse semantics into finer maps
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:],
                                                              mode="nearest")
        outs = [conv(x) for conv, x in zip(self.output, laterals, strict=True)]
        p6 = self.p6(outs[-1])
        return [*outs, p6, self.p7(F.relu(p6))]


# ---------------------------------------------------------------- heads


def _predictor(in_ch: int, out_ch: int, kernel: int, bias: float = 0.0) -> nn.Conv2d:
    conv = nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2)
    nn.init.normal_(conv.weight, std=0.01)  # ATSS's init of every head conv
    nn.init.constant_(conv.bias, bias)
    return conv


def _gn_groups(channels: int) -> int:
    return math.gcd(32, channels)  # ATSS's GroupNorm(32), fewer groups for narrow heads


class _Predictors(nn.Module):
    """cls logits, box deltas (times a learnable per-level scale) and centerness from two feature maps."""

    def __init__(self, channels: int, num_classes: int, kernel: int, levels: int) -> None:
        super().__init__()
        self.cls = _predictor(channels, num_classes, kernel, bias=-math.log((1 - _PRIOR) / _PRIOR))
        self.box = _predictor(channels, 4, kernel)
        self.ctr = _predictor(channels, 1, kernel)
        self.scales = nn.Parameter(torch.ones(levels))

    def forward(self, cls_feats: Sequence[torch.Tensor], box_feats: Sequence[torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        def flat(x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, H*W, C), locations row-major
            return x.flatten(2).transpose(1, 2)

        cls = torch.cat([flat(self.cls(f)) for f in cls_feats], 1)
        box = torch.cat([flat(self.box(f) * self.scales[i]) for i, f in enumerate(box_feats)], 1)
        ctr = torch.cat([flat(self.ctr(f)) for f in box_feats], 1).squeeze(2)
        return cls, box, ctr


class TowerHead(nn.Module):
    """ATSS's head: 4 × (3×3 conv, GN, ReLU) for each of the classification and box branches, 3×3 predictors."""

    def __init__(self, channels: int, num_classes: int, levels: int = 5, convs: int = 4) -> None:
        super().__init__()

        def tower() -> nn.Sequential:
            layers: list[nn.Module] = []
            for _ in range(convs):
                layers += [_predictor(channels, channels, 3), nn.GroupNorm(_gn_groups(channels), channels), nn.ReLU()]
            return nn.Sequential(*layers)

        self.cls_tower, self.box_tower = tower(), tower()
        self.predict = _Predictors(channels, num_classes, 3, levels)

    def forward(self, pyramid: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.predict([self.cls_tower(p) for p in pyramid], [self.box_tower(p) for p in pyramid])


class DyHeadHead(nn.Module):
    """DyHead's ATSS head: ``blocks`` DyHead blocks over the whole pyramid, then shared 1×1 predictors."""

    def __init__(self, channels: int, num_classes: int, levels: int = 5, blocks: int = 6) -> None:
        super().__init__()
        self.dyhead = DyHead(num_blocks=blocks, channels=channels)
        self.predict = _Predictors(channels, num_classes, 1, levels)

    def forward(self, pyramid: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        refined = self.dyhead(pyramid)
        return self.predict(refined, refined)


# ---------------------------------------------------------------- anchors and boxes


def make_anchors(sizes: Sequence[tuple[int, int]], strides: Sequence[int], scale: float,
                 device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One square anchor of side ``scale × stride`` centred on each location ``((x + 0.5) s, (y + 0.5) s)``.

    Returns anchors ``(A, 4)`` (levels in order, locations row-major, as the head flattens them) and the
    level of each, ``(A,)`` int64.
    """
    boxes, levels = [], []
    for level, ((h, w), s) in enumerate(zip(sizes, strides, strict=True)):
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        cx, cy = (xs.reshape(-1) + 0.5) * s, (ys.reshape(-1) + 0.5) * s
        half = scale * s / 2
        boxes.append(torch.stack([cx - half, cy - half, cx + half, cy + half], 1).float())
        levels.append(torch.full((h * w,), level, dtype=torch.long, device=device))
    return torch.cat(boxes), torch.cat(levels)


def encode(anchors: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Box deltas ``(..., 4)`` that :func:`decode` maps ``anchors`` onto ``boxes`` with (same shapes)."""
    wx, wy, ww, wh = _DELTA_WEIGHTS
    aw, ah = anchors[..., 2] - anchors[..., 0], anchors[..., 3] - anchors[..., 1]
    ax, ay = anchors[..., 0] + aw / 2, anchors[..., 1] + ah / 2
    bw, bh = (boxes[..., 2] - boxes[..., 0]).clamp_min(1e-3), (boxes[..., 3] - boxes[..., 1]).clamp_min(1e-3)
    bx, by = boxes[..., 0] + bw / 2, boxes[..., 1] + bh / 2
    return torch.stack([wx * (bx - ax) / aw, wy * (by - ay) / ah, ww * torch.log(bw / aw), wh * torch.log(bh / ah)], -1)


def decode(anchors: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """Boxes ``(..., 4)`` from anchors and deltas (broadcasting), ``dw``/``dh`` clamped so ``exp`` stays finite."""
    wx, wy, ww, wh = _DELTA_WEIGHTS
    aw, ah = anchors[..., 2] - anchors[..., 0], anchors[..., 3] - anchors[..., 1]
    ax, ay = anchors[..., 0] + aw / 2, anchors[..., 1] + ah / 2
    cx, cy = ax + deltas[..., 0] / wx * aw, ay + deltas[..., 1] / wy * ah
    w = aw * torch.exp((deltas[..., 2] / ww).clamp(max=_MAX_DWH))
    h = ah * torch.exp((deltas[..., 3] / wh).clamp(max=_MAX_DWH))
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


# ---------------------------------------------------------------- the detector


class DenseOutput(NamedTuple):
    """Per-anchor outputs for a batch: ``cls`` logits ``(N, A, K)``, box deltas ``(N, A, 4)``, centerness
    logits ``(N, A)``; ``anchors`` ``(A, 4)`` and ``levels`` ``(A,)`` are shared by the batch."""

    cls: torch.Tensor
    box: torch.Tensor
    ctr: torch.Tensor
    anchors: torch.Tensor
    levels: torch.Tensor


@dataclass(frozen=True)
class Detections:
    """One image's detections: ``boxes`` ``(D, 4)`` pixels, ``scores`` ``(D,)`` in [0, 1], ``classes`` ``(D,)``."""

    boxes: torch.Tensor
    scores: torch.Tensor
    classes: torch.Tensor


class ATSS(nn.Module):
    """ATSS detector: backbone C3–C5 → FPN P3–P7 → head (``towers`` or ``dyhead``) → dense outputs.

    Args:
        backbone: a :data:`BACKBONES` name (random init: nothing is downloaded).
        num_classes: object classes (no background class: sigmoid scores).
        img_size: training image side, to pick the backbone's stride-8/16/32 stages.
        head: ``towers`` (ATSS's 4-conv GN towers) or ``dyhead`` (``dyhead_blocks`` DyHead blocks).
        channels: FPN and head width (256 in the papers; a multiple of 16, DyHead's GroupNorm).
        anchor_scale: anchor side in strides (8, ATSS's octave scale).

    Shape: ``(N, 3, H, W)`` float in [0, 1] → :class:`DenseOutput`.
    """

    def __init__(self, backbone: str, *, num_classes: int, img_size: int = 128, head: str = "towers",
                 dyhead_blocks: int = 6, channels: int = 256, anchor_scale: float = 8.0) -> None:
        super().__init__()
        if head not in HEADS:
            raise UnknownNameError("detection head", head, HEADS)
        if channels < 16 or channels % 16:
            raise SecbenchError(f"detector channels must be a positive multiple of 16, got {channels}")
        self.num_classes, self.anchor_scale = num_classes, anchor_scale
        self.backbone = PyramidBackbone(backbone, img_size)
        self.fpn = FPN(self.backbone.channels, channels)
        self.head: nn.Module = (TowerHead(channels, num_classes) if head == "towers"
                                else DyHeadHead(channels, num_classes, blocks=dyhead_blocks))
        self._anchor_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """P3–P7 of ``x``: five ``(N, channels, H_l, W_l)`` maps."""
        return self.fpn(self.backbone(x))

    def forward(self, x: torch.Tensor) -> DenseOutput:
        pyramid = self.pyramid(x)
        cls, box, ctr = self.head(pyramid)
        sizes = tuple(tuple(p.shape[-2:]) for p in pyramid)
        key = (sizes, x.device)
        if key not in self._anchor_cache:
            self._anchor_cache[key] = make_anchors(sizes, STRIDES, self.anchor_scale, x.device)
        return DenseOutput(cls, box, ctr, *self._anchor_cache[key])

    @torch.no_grad()
    def detect(self, images: torch.Tensor, *, score_threshold: float = 0.05, nms_iou: float = 0.6,
               max_detections: int = 100, candidates_per_level: int = 1000) -> list[Detections]:
        """Detections for ``images`` ``(N, 3, H, W)`` float in [0, 1], ATSS's inference: score
        ``sqrt(sigmoid(cls) · sigmoid(ctr))`` where ``sigmoid(cls) > score_threshold``, the top
        ``candidates_per_level`` per level, boxes clipped to the image, per-class NMS, the best ``max_detections``."""
        out = self(images)
        h, w = images.shape[-2:]
        results = []
        probs = out.cls.float().sigmoid()
        scores_all = (probs * out.ctr.float().sigmoid()[..., None]).sqrt()
        for i in range(len(images)):
            keep_mask = probs[i] > score_threshold  # (A, K)
            anchor_idx, classes = keep_mask.nonzero(as_tuple=True)
            scores = scores_all[i][anchor_idx, classes]
            picked = []
            for level in range(len(STRIDES)):
                members = torch.nonzero(out.levels[anchor_idx] == level).squeeze(1)
                if len(members) > candidates_per_level:
                    members = members[scores[members].topk(candidates_per_level).indices]
                picked.append(members)
            sel = torch.cat(picked)
            anchor_idx, classes, scores = anchor_idx[sel], classes[sel], scores[sel]
            boxes = decode(out.anchors[anchor_idx], out.box[i][anchor_idx].float())
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
            valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            boxes, scores, classes = boxes[valid], scores[valid], classes[valid]
            keep = batched_nms(boxes, scores, classes, nms_iou)[:max_detections]
            results.append(Detections(boxes[keep].cpu(), scores[keep].cpu(), classes[keep].cpu()))
        return results


# ---------------------------------------------------------------- ATSS assignment and loss


def atss_assign(anchors: torch.Tensor, levels: torch.Tensor, gt_boxes: torch.Tensor, topk: int = 9
                ) -> torch.Tensor:
    """ATSS's positive anchors for one image: the index of the assigned ground-truth box per anchor, -1 for
    negatives; ``(A,)`` int64.

    For each box: per level the ``topk`` anchors whose centres are nearest its centre are candidates; those with
    IoU ≥ mean + std of the candidates' IoUs and their centre strictly inside the box are positives. An anchor
    positive for several boxes goes to the one it overlaps most.
    """
    num_anchors, num_gt = len(anchors), len(gt_boxes)
    assigned = torch.full((num_anchors,), -1, dtype=torch.long, device=anchors.device)
    if num_gt == 0:
        return assigned
    iou = box_iou(anchors, gt_boxes)  # (A, G)
    a_centre = (anchors[:, :2] + anchors[:, 2:]) / 2
    g_centre = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
    distance = torch.cdist(a_centre, g_centre)  # (A, G)
    candidates = []
    for level in range(int(levels.max()) + 1):
        members = torch.nonzero(levels == level).squeeze(1)
        k = min(topk, len(members))
        nearest = distance[members].topk(k, dim=0, largest=False).indices  # (k, G)
        candidates.append(members[nearest])
    candidates = torch.cat(candidates)  # (C, G)
    cand_iou = iou.gather(0, candidates)  # (C, G)
    threshold = cand_iou.mean(0) + cand_iou.std(0)  # (G,), unbiased std as ATSS's code
    cand_centre = a_centre[candidates]  # (C, G, 2)
    inside = ((cand_centre - gt_boxes[None, :, :2]).amin(-1) > 0.01) & \
             ((gt_boxes[None, :, 2:] - cand_centre).amin(-1) > 0.01)
    positive = (cand_iou >= threshold[None]) & inside  # (C, G)
    # (A, G) IoU where (anchor, box) is a positive pair, else -1; then each anchor takes its best box
    masked = torch.full_like(iou, -1.0)
    gt_index = torch.arange(num_gt, device=anchors.device).expand_as(candidates)
    masked[candidates[positive], gt_index[positive]] = iou[candidates[positive], gt_index[positive]]
    best, which = masked.max(1)
    return torch.where(best >= 0, which, assigned)


def _centerness(anchors: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """FCOS/ATSS centerness of each anchor centre in its box: ``sqrt(min(l,r)/max(l,r) · min(t,b)/max(t,b))``."""
    cx, cy = (anchors[:, 0] + anchors[:, 2]) / 2, (anchors[:, 1] + anchors[:, 3]) / 2
    lr = torch.stack([cx - boxes[:, 0], boxes[:, 2] - cx], 1)
    tb = torch.stack([cy - boxes[:, 1], boxes[:, 3] - cy], 1)
    ratio = (lr.amin(1) / lr.amax(1).clamp_min(1e-6)) * (tb.amin(1) / tb.amax(1).clamp_min(1e-6))
    return ratio.clamp_min(0).sqrt()


def atss_loss(out: DenseOutput, labels: torch.Tensor, *, topk: int = 9, box_weight: float = 2.0
              ) -> torch.Tensor:
    """The ATSS training loss for a batch, as a scalar: focal + 2 · GIoU + centerness BCE.

    ``labels``: ``(N, M, 5)`` rows ``(class, x1, y1, x2, y2)`` in pixels, class -1 for padding. Focal and
    centerness losses are averaged over positives, GIoU over the positives' centerness targets (ATSS's
    normalisation), so the loss scale does not depend on how many objects a batch holds.
    """
    cls, box, ctr = out.cls.float(), out.box.float(), out.ctr.float()
    n, num_anchors, num_classes = cls.shape
    cls_target = torch.zeros_like(cls)
    pos_anchor, pos_image, pos_boxes = [], [], []
    for i in range(n):
        valid = labels[i, :, 0] >= 0
        gt = labels[i, valid, 1:].to(cls.device, torch.float32)
        gt_cls = labels[i, valid, 0].to(cls.device).long()
        assigned = atss_assign(out.anchors, out.levels, gt, topk)
        pos = torch.nonzero(assigned >= 0).squeeze(1)
        cls_target[i, pos, gt_cls[assigned[pos]]] = 1.0
        pos_anchor.append(pos)
        pos_image.append(torch.full_like(pos, i))
        pos_boxes.append(gt[assigned[pos]])
    anchors_idx, images_idx, target_boxes = torch.cat(pos_anchor), torch.cat(pos_image), torch.cat(pos_boxes)
    num_pos = max(1.0, float(len(anchors_idx)))
    loss_cls = sigmoid_focal_loss(cls, cls_target, alpha=0.25, gamma=2.0, reduction="sum") / num_pos
    if len(anchors_idx) == 0:  # nothing to regress: keep the graph connected, add zero
        return loss_cls + 0.0 * (box.sum() + ctr.sum())
    anchors = out.anchors[anchors_idx]
    ctr_target = _centerness(anchors, target_boxes)
    predicted = decode(anchors, box[images_idx, anchors_idx])
    giou = generalized_box_iou_loss(predicted, target_boxes, reduction="none")
    loss_box = (giou * ctr_target).sum() / ctr_target.sum().clamp_min(1e-6)
    loss_ctr = F.binary_cross_entropy_with_logits(ctr[images_idx, anchors_idx], ctr_target, reduction="sum") / num_pos
    return loss_cls + box_weight * loss_box + loss_ctr


@register("detector", "atss")
def atss(*, backbone: str = "resnet18", num_classes: int, img_size: int = 128, head: str = "towers",
         dyhead_blocks: int = 6, channels: int = 256, anchor_scale: float = 8.0) -> ATSS:
    """ATSS (arXiv 1912.02424) on an FPN P3–P7 over a zoo backbone; head: GN towers or DyHead blocks (2106.08322)."""
    return ATSS(backbone, num_classes=num_classes, img_size=img_size, head=head, dyhead_blocks=dyhead_blocks,
                channels=channels, anchor_scale=anchor_scale)
