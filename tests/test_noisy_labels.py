"""Noisy-label point-cloud segmentation: the noise generator, the robust losses, PNAL's history and voting,
the segmenters, mIoU, and the scenario end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from attacks.label_noise import LabelNoise, class_pairs, realised_rate
from defenses.noisy_labels.clusters import cluster_points, cluster_purity
from defenses.noisy_labels.losses import (
    IGNORE,
    cross_entropy,
    generalized_cross_entropy,
    symmetric_cross_entropy,
)
from defenses.noisy_labels.pnal import PNAL, history_reliability
from secbench.data.points import PointSet, jitter_blocks
from secbench.engine import TrainConfig, fit
from secbench.errors import SecbenchError
from secbench.metrics import segmentation_scores
from secbench.models.pointseg import DGCNN, PointNet, knn

CLASSES = ("ceiling", "floor", "wall", "window", "door", "table", "chair", "cabinet", "bookcase", "lamp", "box")


def toy_points(blocks: int = 6, points: int = 200, seed: int = 0) -> PointSet:
    """Blocks of objects of varied sizes: each instance a compact blob with one class and one colour."""
    rng = np.random.default_rng(seed)
    xyz = np.empty((blocks, points, 3), np.float32)
    rgb = np.empty_like(xyz)
    labels = np.empty((blocks, points), np.int64)
    instances = np.empty_like(labels)
    next_id = 0
    for b in range(blocks):
        parts = max(1, min(8, points // 5))
        sizes = rng.multinomial(points - parts * min(5, points), np.ones(parts) / parts) + min(5, points)
        start = 0
        for size in sizes:
            centre = rng.uniform(-0.6, 0.6, 3)
            xyz[b, start : start + size] = centre + rng.normal(0, 0.02, (size, 3))
            rgb[b, start : start + size] = rng.uniform(0, 1, 3)
            labels[b, start : start + size] = rng.integers(len(CLASSES))
            instances[b, start : start + size] = next_id
            start, next_id = start + size, next_id + 1
    channels = np.concatenate([xyz, rgb, (xyz + 1) / 2], -1).transpose(0, 2, 1)
    return PointSet(torch.from_numpy(np.ascontiguousarray(channels)), torch.from_numpy(labels),
                    torch.from_numpy(instances), torch.arange(blocks))


# ---------------------------------------------------------------- label noise


@pytest.mark.parametrize("kind", ["symmetric", "asymmetric", "point"])
@pytest.mark.parametrize("rate", [0.0, 0.2, 0.4, 0.6])
def test_noise_hits_the_exact_rate_and_never_keeps_a_flipped_label(kind, rate):
    data = toy_points()
    noisy = LabelNoise(kind, rate, seed=3)(data.labels, data.instances, data.points[:, 6:9].permute(0, 2, 1), CLASSES)
    n = data.labels.numel()
    assert noisy.shape == data.labels.shape and noisy.dtype == torch.int64
    assert abs(realised_rate(data.labels, noisy) - rate) <= 0.5 / n
    assert int(noisy.min()) >= 0 and int(noisy.max()) < len(CLASSES)


@pytest.mark.parametrize("kind", ["symmetric", "asymmetric"])
def test_instance_noise_flips_whole_instances_but_one(kind):
    data = toy_points(blocks=8)
    noisy = LabelNoise(kind, 0.4, seed=1)(data.labels, data.instances, data.points[:, 6:9].permute(0, 2, 1), CLASSES)
    flipped = noisy != data.labels
    partial = 0
    for inst in data.instances.unique():
        members = data.instances == inst
        share = flipped[members].float().mean().item()
        partial += 0 < share < 1
        assert len(noisy[members].unique()) == 1 or 0 < share < 1  # a flipped instance takes one new class
    assert partial <= 1


def test_asymmetric_noise_sends_paired_classes_to_their_partner_a_third_of_the_time():
    pairs = class_pairs(CLASSES)
    assert pairs == {3: 2, 2: 3, 8: 5, 5: 8, 4: 7, 7: 4}  # window-wall, bookcase-table, door-cabinet
    labels = torch.full((1, 6000), 3)  # 6000 one-point windows
    noisy = LabelNoise("asymmetric", 0.5, seed=0)(labels, torch.arange(6000)[None], torch.rand(1, 6000, 3), CLASSES)
    to_wall = (noisy == 2).sum().item() / (noisy != 3).sum().item()
    # 1/3 to the partner, and 1/10 of the other 2/3 draw the partner at random: 0.4
    assert to_wall == pytest.approx(1 / 3 + 2 / 3 / 10, abs=0.03)


def test_noise_rejects_bad_kinds_and_rates():
    with pytest.raises(SecbenchError, match="unknown noise kind"):
        LabelNoise("gaussian", 0.2)
    for rate in (-0.1, 1.0):
        with pytest.raises(SecbenchError, match=r"in \[0, 1\)"):
            LabelNoise("symmetric", rate)


# ---------------------------------------------------------------- losses and metrics


def test_robust_losses_match_their_formulas():
    logits = torch.log(torch.tensor([0.5, 0.25, 0.25]))[None, :, None].repeat(1, 1, 2)  # p_y = 0.5 at both points
    labels = torch.tensor([[0, IGNORE]])
    assert cross_entropy(logits, labels).item() == pytest.approx(math.log(2))
    assert generalized_cross_entropy(logits, labels, q=0.7).item() == pytest.approx((1 - 0.5**0.7) / 0.7)
    sce = symmetric_cross_entropy(logits, labels, alpha=0.1, beta=1.0).item()
    assert sce == pytest.approx(0.1 * math.log(2) + math.log(1e4) * 0.5)
    assert cross_entropy(logits, torch.full((1, 2), IGNORE)).item() == 0.0  # nothing kept: zero, not NaN


def test_segmentation_scores_match_a_confusion_matrix_reference():
    from sklearn.metrics import confusion_matrix

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 5, 4000)
    predicted = np.where(rng.random(4000) < 0.7, truth, rng.integers(0, 6, 4000))  # class 5 predicted, never true
    scores = segmentation_scores(torch.from_numpy(predicted), torch.from_numpy(truth), 7)
    cm = confusion_matrix(truth, predicted, labels=range(7)).astype(float)
    with np.errstate(invalid="ignore"):
        iou = np.diag(cm) / (cm.sum(0) + cm.sum(1) - np.diag(cm))
    assert np.isnan(scores["iou"][6].item())  # class 6: absent from both, not counted
    assert scores["iou"][5].item() == 0.0
    assert scores["miou"].item() == pytest.approx(np.nanmean(iou[:6]))
    assert scores["oa"].item() == pytest.approx((truth == predicted).mean())


# ---------------------------------------------------------------- PNAL


def test_history_reliability_on_hand_made_sequences():
    history = torch.tensor([[2, 2, 2, 2], [2, 2, 1, 2], [IGNORE, 2, 2, 2], [0, 1, 0, 1]])
    mode, reliable = history_reliability(history, 11, tau=0.05)
    assert mode.tolist()[:3] == [2, 2, 2] and reliable.tolist() == [True, False, False, False]
    # p = 3/4: uncertainty -0.75 ln 0.75 / ln 11 = 0.090, reliable once tau allows it
    assert history_reliability(history, 11, tau=0.1)[1].tolist() == [True, True, False, False]


def _pnal_on(data: PointSet, clusters: torch.Tensor, **options) -> PNAL:
    learner = PNAL(warmup_epochs=0, **options)
    learner.prepare(data)
    learner.clusters = clusters
    return learner


def test_voting_corrects_a_planted_cluster_and_leaves_unreliable_ones_alone():
    data = toy_points(blocks=1, points=60).with_labels(torch.full((1, 60), 3))  # every label wrong
    clusters = torch.cat([torch.zeros(30), torch.ones(30)]).long()[None]
    learner = _pnal_on(data, clusters)
    learner.history[0, :30] = 1  # cluster 0: four agreeing predictions of class 1
    learner.history[0, 30:] = torch.tensor([1, 2, 1, 2])  # cluster 1: never reliable
    learner.recorded[:] = 4
    learner.correct(torch.tensor([0]), torch.zeros(1, 11, 60))
    assert learner.labels[0, :30].eq(1).all() and learner.corrected[0, :30].all()
    assert learner.labels[0, 30:].eq(3).all() and not learner.corrected[0, 30:].any()


def test_vote_threshold_decides_which_minorities_can_win():
    data = toy_points(blocks=1, points=13)
    clusters = torch.zeros(1, 13, dtype=torch.long)
    wins = {}
    for threshold in (5, 2):
        winners = set()
        for seed in range(40):
            learner = _pnal_on(data, clusters, vote_threshold=threshold, seed=seed)
            learner.history[0, :10], learner.history[0, 10:] = 1, 2  # 10 votes for class 1, 3 for class 2
            learner.recorded[:] = 4
            learner.correct(torch.tensor([0]), torch.zeros(1, 11, 13))
            winners.add(learner.labels[0, 0].item())
        wins[threshold] = winners
    assert wins[2] == {1} and wins[5] == {1, 2}  # 3 >= 10 // 5 = 2 can win; 3 < 10 // 2 = 5 cannot


def test_without_voting_the_reliable_point_that_best_fits_its_label_labels_its_cluster():
    data = toy_points(blocks=1, points=4).with_labels(torch.tensor([[1, 3, 3, 3]]))
    learner = _pnal_on(data, torch.zeros(1, 4, dtype=torch.long), vote=False)
    learner.history[0] = torch.tensor([[1] * 4, [2] * 4, [2] * 4, [0, 1, 0, 1]])
    learner.recorded[:] = 4
    logits = torch.zeros(1, 11, 4)
    logits[0, 1, 0] = 5.0  # point 0's given label 1 has the lowest loss; its modal prediction is 1
    learner.correct(torch.tensor([0]), logits)
    assert learner.labels[0].tolist() == [1, 1, 1, 1]


def test_pnal_trains_on_noisy_labels_in_warm_up_then_only_on_corrected_points():
    data = toy_points(blocks=2, points=50)
    learner = PNAL(warmup_epochs=1, queue=1)
    learner.prepare(data)
    logits = torch.randn(2, 11, 50)
    index = torch.tensor([0, 1])
    assert learner(logits, data.labels, index).item() == pytest.approx(F.cross_entropy(logits, data.labels).item())
    assert learner.recorded.tolist() == [1, 1]
    # epoch 2: one agreeing prediction (Q = 1) makes every point reliable, so every cluster is corrected
    predicted = logits.argmax(1)
    loss = learner(logits, data.labels, index)
    assert learner.corrected.all()
    assert loss.item() == pytest.approx(F.cross_entropy(logits, learner.labels).item())
    for cluster in learner.clusters.unique():  # each cluster took one of its points' predictions, as one label
        members = learner.clusters == cluster
        assert len(learner.labels[members].unique()) == 1
        assert learner.labels[members][0] in predicted[members]


def test_dbscan_clusters_follow_instances():
    data = toy_points()
    clusters = cluster_points(data.points, "dbscan", eps=0.08)
    assert clusters.shape == data.labels.shape and len(clusters.unique()) >= 8 * 6
    assert cluster_purity(clusters, data.instances) > 0.95
    gmm = cluster_points(data.points[:1], "gmm", components=8)
    assert len(gmm.unique()) <= 8
    with pytest.raises(SecbenchError, match="unknown clustering"):
        cluster_points(data.points, "kmeans")


# ---------------------------------------------------------------- segmenters and the engine


def test_point_jitter_moves_xyz_by_a_small_rotation_and_keeps_colour():
    blocks = toy_points(blocks=3, points=64).points
    moved = jitter_blocks(blocks, torch.Generator().manual_seed(0))
    assert moved[:, 3:].equal(blocks[:, 3:])
    assert (moved[:, :3].norm(dim=1) - blocks[:, :3].norm(dim=1)).abs().max() <= 0.01 * 3**0.5 + 1e-6
    far = blocks[:, :3].norm(dim=1) > 0.2  # where a 1 cm jitter turns a point by under 5 degrees
    cosine = F.cosine_similarity(moved[:, :3], blocks[:, :3], dim=1)[far]
    assert cosine.min() > math.cos(math.radians(15 * 3**0.5 + 5)) and (moved != blocks).any()


def test_knn_finds_each_point_itself_first():
    points = torch.randn(2, 3, 50)
    neighbours = knn(points, 5)
    assert neighbours.shape == (2, 50, 5) and neighbours[:, :, 0].equal(torch.arange(50).expand(2, 50))


@pytest.mark.parametrize("build", [lambda: DGCNN(11, k=8, embed=32), lambda: PointNet(11)])
def test_segmenters_map_blocks_to_per_point_logits_and_learn(build):
    torch.manual_seed(0)
    data = toy_points(blocks=4, points=128)
    model = build()
    assert model(data.points).shape == (4, 11, 128)
    cfg = TrainConfig(epochs=15, batch_size=4, lr=3e-3, optimizer="adam", weight_decay=0.0, augment=(),
                      schedule="constant", precise_bn=0)
    history = fit(model, data, cfg, generator=torch.Generator().manual_seed(0), device=torch.device("cpu"),
                  item_loss=lambda out, y, index: cross_entropy(out, y))
    assert history["loss"][-1] < 0.6 * history["loss"][0]


def test_fit_gives_an_item_loss_every_block_once_per_epoch_and_averages_weights():
    data = toy_points(blocks=5, points=32)
    seen: list[int] = []

    def loss(out, y, index):
        seen.extend(index.tolist())
        return cross_entropy(out, y)

    model = PointNet(11)
    cfg = TrainConfig(epochs=3, batch_size=2, lr=1e-3, optimizer="adam", augment=(), schedule="step", step_every=1,
                      step_gamma=0.5, ema=0.9, precise_bn=0)
    history = fit(model, data, cfg, generator=torch.Generator().manual_seed(0), device=torch.device("cpu"),
                  item_loss=loss)
    assert sorted(seen) == sorted(list(range(5)) * 3)
    assert history["lr"] == pytest.approx([5e-4, 2.5e-4, 1.25e-4])  # halved after each epoch


# ---------------------------------------------------------------- the scenario


def test_smoke_run_records_noise_scores_correction_and_a_picture(tmp_path):
    from click.testing import CliRunner

    from secbench import store
    from secbench.cli import cli

    args = ["run", "noisy-labels", "--preset", "smoke", "--method", "pnal,ce", "--rate", "0.4", "--point-augment",
            "--out", str(tmp_path)]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    records = {r["method"]: r for r in store.load_records(tmp_path)}
    assert set(records) == {"pnal", "ce"}
    for record in records.values():
        metrics = record["metrics"]
        assert record["attack"] == "symmetric-0.4" and record["status"] == "ok"
        assert abs(metrics["realised_noise_rate"] - 0.4) <= 0.5 / record["derived"]["n_train_blocks"] / 128
        ious = [v for k, v in metrics.items() if k.startswith("iou_")]
        assert ious and metrics["miou"] == pytest.approx(sum(ious) / len(ious))  # the mean over present classes
        assert (tmp_path / record["artifacts"] / "room.png").stat().st_size > 10_000
    # one upper bound, trained once and shared
    assert records["pnal"]["metrics"]["upper_bound_miou"] == records["ce"]["metrics"]["upper_bound_miou"]
    assert len(list((tmp_path / "cache").glob("noisy-labels-upper-bound-*"))) == 1
    assert {"correction_precision", "correction_recall", "kept_fraction"} <= set(records["pnal"]["metrics"])
    table = CliRunner().invoke(cli, ["report", str(tmp_path), "--scenario", "noisy-labels"]).output
    assert "test mIoU by learner" in table and "symmetric-0.4" in table
