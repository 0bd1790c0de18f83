"""Detection: procedural boxes, COCO JSON round trip and validation, boxes under every augmentation, ATSS
assignment, DyHead level shapes, COCO AP with pycocotools, and the scenario end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from attacks.corruptions import DETECTION_CORRUPTIONS, GEOMETRIC, corrupt_with_boxes
from secbench.data.detection import DetectionSet, flip_boxes, load_detection, objects, pad_targets, to_coco
from secbench.errors import SecbenchError
from secbench.metrics import coco_ap
from secbench.models.detector import (
    ATSS,
    STRIDES,
    DyHeadHead,
    atss_assign,
    atss_loss,
    decode,
    encode,
    make_anchors,
)


@pytest.fixture(scope="module")
def tiny() -> object:
    return objects(seed=3, n_train=12, n_test=6, img_size=128)


def _mask_box(image: torch.Tensor) -> list[float]:
    """The box of the pixels brighter than halfway between the image's darkest and brightest."""
    grey = image.float().mean(0)
    rows, cols = torch.nonzero(grey > (grey.max() + grey.min()) / 2, as_tuple=True)
    return [cols.min().item(), rows.min().item(), cols.max().item() + 1, rows.max().item() + 1]


# ---------------------------------------------------------------- data


def test_objects_are_deterministic_with_tight_boxes_inside_the_image(tiny):
    again = objects(seed=3, n_train=12, n_test=6, img_size=128)
    assert tiny.fingerprint() == again.fingerprint()
    assert tiny.fingerprint() != objects(seed=4, n_train=12, n_test=6).fingerprint()
    assert tiny.train.images.shape == (12, 3, 128, 128) and tiny.num_classes == 10
    labels = tiny.train.labels
    valid = labels[..., 0] >= 0
    assert valid.sum(1).min() >= 1 and valid.sum(1).max() <= 6
    boxes = labels[valid][:, 1:]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 128).all() and (boxes[:, 2:] > boxes[:, :2]).all()
    assert (labels[~valid][:, 1:] == 0).all()  # padding rows are zero boxes


def test_coco_json_round_trip_keeps_images_and_boxes(tiny, tmp_path):
    folder = to_coco(tiny, tmp_path / "coco")
    content = json.loads((folder / "annotations" / "instances_train.json").read_text())
    assert len(content["images"]) == 12 and len(content["categories"]) == 10
    back = load_detection(f"coco:{folder}", img_size=128)
    assert back.classes == tiny.classes and back.area_thresholds == (32.0, 96.0)
    assert torch.equal(back.train.images, tiny.train.images)  # PNG is lossless, 128 -> 128 is no resize
    for i in range(len(tiny.test)):
        (b1, c1), (b2, c2) = tiny.test.objects(i), back.test.objects(i)
        np.testing.assert_allclose(b1, b2, atol=1e-4)
        assert (c1 == c2).all()


def _write(tmp_path, images, annotations, categories=({"id": 1, "name": "a"},)):
    base = tmp_path / "bad"
    (base / "annotations").mkdir(parents=True)
    (base / "train").mkdir()
    from PIL import Image

    Image.new("RGB", (40, 30)).save(base / "train" / "a.png")
    payload = {"images": images, "annotations": annotations, "categories": list(categories)}
    (base / "annotations" / "instances_train.json").write_text(json.dumps(payload))
    (base / "annotations" / "instances_val.json").write_text(json.dumps(payload))
    return base


_IMAGE = {"id": 7, "file_name": "a.png", "width": 40, "height": 30}


@pytest.mark.parametrize("images, box, category, message", [
    ([_IMAGE, {"id": 8, "file_name": "gone.png", "width": 40, "height": 30}], [1, 1, 5, 5], 1,
     r"image 8 \(gone.png\): missing file"),
    ([_IMAGE], [30, 10, 20, 5], 1, r"annotation 3 \(image 7\): box .* lies outside the 40x30 image"),
    ([_IMAGE], [5, 5, 0, 4], 1, r"annotation 3 \(image 7\): zero-area box"),
    ([_IMAGE], [5, 5, 4, 4], 9, r"annotation 3 \(image 7\): unknown category id 9"),
])
def test_bad_coco_entries_raise_one_error_naming_the_first(tmp_path, images, box, category, message):
    good = {"id": 2, "image_id": 7, "category_id": 1, "bbox": [1, 1, 4, 4]}
    bad = {"id": 3, "image_id": 7, "category_id": category, "bbox": box}
    later = {"id": 4, "image_id": 7, "category_id": 5, "bbox": [0, 0, 0, 0]}  # also bad, but not first
    base = _write(tmp_path, images, [good, bad, later])
    with pytest.raises(SecbenchError, match=message) as err:
        load_detection(f"coco:{base}", img_size=64)
    assert "\n" not in str(err.value)


def test_bad_coco_input_exits_2_with_one_error_line(tmp_path):
    from click.testing import CliRunner

    from secbench.cli import cli

    base = _write(tmp_path, [_IMAGE], [{"id": 3, "image_id": 7, "category_id": 1, "bbox": [5, 5, 0, 4]}])
    result = CliRunner().invoke(cli, ["run", "detection", "--preset", "smoke", "--dataset", f"coco:{base}",
                                      "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "zero-area box" in lines[0]


# ---------------------------------------------------------------- boxes follow every augmentation


def test_flip_moves_boxes_with_the_pixels():
    images = torch.zeros(8, 3, 32, 48)
    images[:, :, 4:12, 5:17] = 1
    labels = pad_targets([np.array([[5, 4, 17, 12]])] * 8, [np.array([2])] * 8, 2)
    flipped, moved = flip_boxes(images, labels, torch.Generator().manual_seed(0))
    was_flipped = [not torch.equal(flipped[i], images[i]) for i in range(8)]
    assert 0 < sum(was_flipped) < 8
    for i in range(8):
        assert moved[i, 0, 1:].tolist() == _mask_box(flipped[i])
        assert moved[i, 1].tolist() == [-1, 0, 0, 0, 0]  # padding untouched


@pytest.mark.parametrize("name", list(DETECTION_CORRUPTIONS))
def test_every_corruption_keeps_or_moves_boxes_with_the_pixels(name):
    images = torch.zeros(2, 3, 96, 96, dtype=torch.uint8)
    disc = ((torch.arange(96)[None] - 40.0) ** 2 + (torch.arange(96)[:, None] - 30.0) ** 2) < 15.0 ** 2
    images[:, :, disc] = 255  # a disc: its box is the same under any rotation
    labels = pad_targets([np.array(_mask_box(images[0]), dtype=np.float64)[None]] * 2, [np.array([4])] * 2, 3)
    for severity in (1, 5):
        out, moved = corrupt_with_boxes(images, labels, name, severity, seed=1)
        assert out.shape == images.shape and out.dtype == torch.uint8 and moved.shape == labels.shape
        assert moved[:, 0, 0].tolist() == [4, 4] and (moved[:, 1:, 0] == -1).all()
        if name in GEOMETRIC:
            assert not torch.equal(moved[0, 0], labels[0, 0])
            np.testing.assert_allclose(moved[0, 0, 1:].numpy(), _mask_box(out[0]), atol=1.5)
        else:
            assert torch.equal(moved, labels)


# ---------------------------------------------------------------- model, assignment, loss


def test_box_encoding_inverts():
    anchors = torch.tensor([[0.0, 0, 64, 64], [10, 20, 30, 60]])
    boxes = torch.tensor([[5.0, 7, 20, 19], [0, 0, 100, 90]])
    torch.testing.assert_close(decode(anchors, encode(anchors, boxes)), boxes)


def test_atss_gives_every_box_a_positive_with_its_centre_inside():
    sizes = [(16 // 2**k or 1, 16 // 2**k or 1) for k in range(5)]
    anchors, levels = make_anchors(sizes, STRIDES, 8.0)
    gt = torch.tensor([[3.0, 4, 14, 13], [4, 6, 124, 122], [60, 10, 90, 40], [100, 100, 126, 127], [50, 70, 62, 79]])
    assigned = atss_assign(anchors, levels, gt)
    assert set(assigned[assigned >= 0].tolist()) == set(range(len(gt)))
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    pos = assigned >= 0
    box = gt[assigned[pos]]
    assert ((centres[pos] > box[:, :2]) & (centres[pos] < box[:, 2:])).all()
    # the image-sized box goes to P4's 128-px anchors, the small one to P3's 64-px ones
    assert levels[assigned == 1].float().mean() > levels[assigned == 0].float().mean()


def test_dyhead_head_keeps_every_level_shape_and_predicts_per_anchor():
    torch.manual_seed(0)
    head = DyHeadHead(32, num_classes=10, blocks=2)
    pyramid = [torch.randn(2, 32, s, s) for s in (16, 8, 4, 2, 1)]
    refined = head.dyhead(pyramid)
    assert [r.shape for r in refined] == [p.shape for p in pyramid]
    cls, box, ctr = head(pyramid)
    anchors = sum(s * s for s in (16, 8, 4, 2, 1))
    assert cls.shape == (2, anchors, 10) and box.shape == (2, anchors, 4) and ctr.shape == (2, anchors)


@pytest.mark.parametrize("backbone", ["resnet18", "micronet-m0", "mobile-former-26m"])
def test_backbones_give_strides_8_16_32_and_the_loss_trains(backbone):
    torch.manual_seed(0)
    model = ATSS(backbone, num_classes=3, img_size=128, channels=32)
    x = torch.rand(2, 3, 128, 128)
    feats = model.backbone(x)
    assert [f.shape[-1] for f in feats] == [16, 8, 4]
    assert [p.shape[-1] for p in model.pyramid(x)] == [16, 8, 4, 2, 1]
    labels = pad_targets([np.array([[10.0, 10, 50, 60]]), np.array([[64.0, 30, 120, 90], [5, 90, 20, 110]])],
                         [np.array([0]), np.array([1, 2])])
    loss = atss_loss(model(x), labels)
    loss.backward()
    assert loss.item() > 0 and all(p.grad is not None for p in model.head.parameters())


# ---------------------------------------------------------------- COCO AP


def test_perfect_predictions_score_ap_one_and_misses_score_less(tiny):
    truth = [tiny.test.objects(i) for i in range(len(tiny.test))]
    perfect = [(b, np.ones(len(c)), c) for b, c in truth]
    scores = coco_ap(truth, perfect, area_thresholds=(16, 48))
    assert scores["ap"] == pytest.approx(1.0) and scores["ap50"] == pytest.approx(1.0)
    assert scores["ap75"] == pytest.approx(1.0)
    assert all(scores[k] == pytest.approx(1.0) for k in ("ap_s", "ap_m", "ap_l") if k in scores)
    shifted = [(b + [4, 0, 4, 0], np.ones(len(c)), c) for b, c in truth]  # 4 px to the right
    assert coco_ap(truth, shifted, area_thresholds=(16, 48))["ap"] < 0.9
    wrong_class = [(b, np.ones(len(c)), (c + 1) % 10) for b, c in truth]
    assert coco_ap(truth, wrong_class)["ap"] == 0.0
    assert coco_ap(truth, [(np.zeros((0, 4)), np.zeros(0), np.zeros(0))] * len(truth))["ap"] == 0.0


def test_detect_returns_scored_boxes_inside_the_image():
    torch.manual_seed(0)
    model = ATSS("resnet18", num_classes=4, img_size=64, channels=16).eval()
    found = model.detect(torch.rand(2, 3, 64, 64), score_threshold=0.0, max_detections=20)
    assert len(found) == 2
    for d in found:
        assert 0 < len(d.boxes) <= 20 and (d.scores >= 0).all() and (d.scores <= 1).all()
        assert (d.boxes >= 0).all() and (d.boxes <= 64).all() and (d.classes < 4).all()


def test_detection_set_batches_for_fit():
    data = DetectionSet(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), pad_targets([np.zeros((0, 4))] * 4,
                                                                                [np.zeros(0, np.int64)] * 4))
    x, y = data.batch(torch.tensor([0, 2]))
    assert x.dtype == torch.float32 and y.shape == (2, 1, 5) and (y[..., 0] == -1).all()


# ---------------------------------------------------------------- the scenario


def test_smoke_run_records_ap_corruption_grid_and_a_picture(tmp_path):
    from click.testing import CliRunner

    from secbench import store
    from secbench.cli import cli

    args = ["run", "detection", "--preset", "smoke", "--head", "towers,dyhead", "--out", str(tmp_path)]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    records = {r["method"]: r for r in store.load_records(tmp_path)}
    assert set(records) == {"towers", "dyhead"}
    for record in records.values():
        metrics = record["metrics"]
        assert record["status"] == "ok" and record["model"] == "resnet18"
        assert {"ap", "ap50", "ap75", "mean_corrupted_ap"} <= set(metrics)
        assert all(0 <= metrics[k] <= 1 for k in ("ap", "ap50", "ap75"))
        grid = [k for k in metrics if k.startswith("ap_") and k[-2:] in {f"s{s}" for s in range(1, 6)}]
        assert len(grid) == 5 * len(DETECTION_CORRUPTIONS)
        assert (tmp_path / record["artifacts"] / "predictions.png").stat().st_size > 10_000
    assert records["dyhead"]["metrics"]["head_params_m"] != records["towers"]["metrics"]["head_params_m"]
    table = CliRunner().invoke(cli, ["report", str(tmp_path), "--scenario", "detection"]).output
    assert "COCO AP" in table and "ap_rotate_s5" in table and "dyhead" in table
