"""Few-label transfer: k-shot draws, clustering scores, anchored selection, the re-balancing sampler,
SimCLR's loss and views, and the scenario end to end at smoke."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from secbench import store
from secbench.cli import cli
from secbench.errors import SecbenchError
from secbench.fewlabel.augment import SimCLRAugment
from secbench.fewlabel.clustering import clustering_scores, contingency, kmeans
from secbench.fewlabel.evaluate import k_shot, weighted_knn
from secbench.fewlabel.sampler import RebalancedSampler
from secbench.fewlabel.selection import cluster_selection, nearest_points
from secbench.fewlabel.ssl import nt_xent


def _blobs(n_per: int = 40, k: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``k`` tight, well separated 2-D blobs: ``(k * n_per, 2)`` points and their blob index."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])[:k]
    labels = torch.arange(k).repeat_interleave(n_per)
    return centres[labels] + 0.5 * torch.randn(len(labels), 2, generator=g), labels


def test_k_shot_draws_exactly_k_per_class_nested_and_seeded():
    labels = torch.tensor([0] * 30 + [1] * 12 + [2] * 50)
    shots = k_shot(labels, [1, 2, 4, 10], seed=3)
    for k, index in shots.items():
        assert len(index) == len(set(index.tolist())) == 3 * k
        assert torch.bincount(labels[index]).tolist() == [k, k, k]
    assert set(shots[4].tolist()) < set(shots[10].tolist())  # nested: more labels, not another draw
    assert torch.equal(k_shot(labels, [4], seed=3)[4], shots[4])
    assert not torch.equal(k_shot(labels, [4], seed=4)[4], shots[4])
    with pytest.raises(SecbenchError, match="have only 12"):
        k_shot(labels, [20], seed=0)


def test_nmi_and_ari_equal_scikit_learns():
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3])
    clusters = np.array([1, 1, 0, 0, 2, 2, 2, 2, 5, 5, 5, 1])
    scores = clustering_scores(labels, clusters)
    assert scores["cluster_nmi"] == pytest.approx(normalized_mutual_info_score(labels, clusters), abs=1e-12)
    assert scores["cluster_ari"] == pytest.approx(adjusted_rand_score(labels, clusters), abs=1e-12)
    assert 0 < scores["cluster_ari"] < scores["cluster_nmi"] < 1
    table = contingency(labels, clusters)  # 4 classes x 4 clusters: try every one-to-one matching
    best = max(sum(table[i, j] for i, j in enumerate(perm)) for perm in itertools.permutations(range(4)))
    assert scores["cluster_acc"] == best / 12 == 0.5


def test_hungarian_accuracy_of_a_permuted_labelling_is_one():
    labels = np.random.default_rng(0).integers(0, 7, 300)
    permuted = np.array([3, 6, 0, 5, 1, 4, 2])[labels]
    assert clustering_scores(labels, permuted) == pytest.approx(
        {"cluster_nmi": 1.0, "cluster_ari": 1.0, "cluster_acc": 1.0})


def test_kmeans_recovers_blobs_and_keeps_anchors_fixed():
    x, labels = _blobs()
    plain = kmeans(x, 4, generator=torch.Generator().manual_seed(0))
    assert clustering_scores(labels.numpy(), plain.assign.numpy())["cluster_acc"] == 1.0
    anchors = x[[0, 1]]  # two labelled points of blob 0: the free centres must find the other three blobs
    result = kmeans(x, 3, anchors=anchors, generator=torch.Generator().manual_seed(0))
    assert torch.equal(result.centres[:2], anchors)
    free = result.free_centres(2)
    assert sorted(labels[torch.cdist(free, x).argmin(1)].tolist()) == [1, 2, 3]


def test_anchored_selection_covers_new_clusters_and_never_reselects():
    x, labels = _blobs()
    labelled = torch.tensor([0, 1, 40])  # blobs 0 and 1 already labelled
    picks = cluster_selection(x, labelled, 2, generator=torch.Generator().manual_seed(0))
    assert not set(picks.tolist()) & set(labelled.tolist())
    assert sorted(labels[picks].tolist()) == [2, 3]
    # the nearest point to a labelled one is never handed out, even when a centre sits on it
    near = nearest_points(x, x[labelled], exclude=labelled)
    assert len(set(near.tolist())) == 3 and not set(near.tolist()) & set(labelled.tolist())


@pytest.mark.parametrize(("share", "n_source", "n_target"), [(0.5, 1000, 90), (0.25, 300, 700), (0.0, 50, 10)])
def test_rebalanced_sampler_hits_the_target_share(share, n_source, n_target):
    sampler = RebalancedSampler(n_source, n_target, share, batch_size=64)
    order = sampler(torch.Generator().manual_seed(0))
    n = n_source + n_target
    assert order.shape == (n,) and order.min() >= 0 and order.max() < n
    for start in range(0, n - 64 + 1, 64):  # every full batch holds exactly the share of target items
        assert (order[start : start + 64] >= n_source).sum().item() == round(share * 64)
    targets = order[order >= n_source]
    if share and len(targets) >= n_target:  # small parts are walked in full passes: each item appears
        assert len(targets.unique()) == n_target
    with pytest.raises(SecbenchError, match="fraction"):
        RebalancedSampler(10, 10, 1.5, 8)


def test_nt_xent_rewards_matching_views():
    g = torch.Generator().manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=1)
    aligned = nt_xent(torch.cat([z, z]), temperature=0.5)
    shuffled = nt_xent(torch.cat([z, z.roll(1, 0)]), temperature=0.5)
    assert aligned < shuffled
    # uniform similarities: the loss is the log of the 2N - 1 candidates
    assert nt_xent(torch.ones(16, 4) / 2, temperature=0.5).item() == pytest.approx(np.log(15), abs=1e-5)


def test_simclr_views_are_random_per_image_and_in_range():
    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    a, b = SimCLRAugment()(x, g), SimCLRAugment()(x, g)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert all(not torch.allclose(a[i], b[i]) for i in range(6))
    identity = SimCLRAugment(min_scale=1.0, ratio=(1.0, 1.0), flip=0.0, jitter=0.0, grey=0.0)(x, g)
    assert torch.allclose(identity, x, atol=1e-5)  # a full-image crop resamples pixel centres exactly


def test_weighted_knn_votes_by_similarity():
    train = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]]), dim=1)
    labels = torch.tensor([0, 1, 1])
    test = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1], [0.1, 1.0]]), dim=1)
    assert weighted_knn(train, labels, test, torch.tensor([0, 1]), k=3, temperature=0.07) == 1.0
    # a high temperature flattens the weights: the two class-1 votes then outweigh the nearest class-0 one
    assert weighted_knn(train, labels, test, torch.tensor([0, 1]), k=3, temperature=100.0) == 0.5


def test_transfer_scenario_smoke_end_to_end(tmp_path: Path):
    base = ["run", "transfer", "--preset", "smoke", "--pretrain", "ssl-target", "--device", "cpu", "--out",
            str(tmp_path)]
    result = CliRunner().invoke(cli, base, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (record,) = store.load_records(tmp_path)
    assert (record["dataset"], record["method"], record["model"]) == ("shapes->digits", "ssl-target", "cnn-s")
    m = record["metrics"]
    expected = {f"{p}_k{k}" for p in ("linear", "knn", "finetune") for k in (1, 2)}
    expected |= {"cluster_nmi", "cluster_ari", "cluster_acc"}
    expected |= {f"select_{s}_r{r}" for s in ("random", "kmeans", "anchored") for r in (1, 2)}
    assert set(m) == expected and all(0 <= v <= 1 for v in m.values())
    assert m["select_kmeans_r1"] == m["select_anchored_r1"]  # round 1 is the same k-means for both
    assert record["n"] == 100 and not record["derived"]["encoder_cached"]
    for figure in ("accuracy_vs_labels.png", "selection.png", "tsne.png"):
        assert (tmp_path / record["artifacts"] / figure).stat().st_size > 1000
    # other evaluation options reuse the cached encoder
    again = CliRunner().invoke(cli, [*base, "--labels-per-class", "1", "--knn-k", "5"], catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert store.load_records(tmp_path)[-1]["derived"]["encoder_cached"]
    table = CliRunner().invoke(cli, ["report", str(tmp_path), "--scenario", "transfer", "--format", "csv"])
    assert table.exit_code == 0, table.output
    assert "fine-tuning" in table.stdout and "select_anchored_r2" in table.stdout


def test_transfer_rejects_bad_options(tmp_path: Path):
    for option, value, message in (("--pretrain", "ssl-targt", "did you mean"), ("--labels-per-class", "0,2", "positive"),
                                   ("--target-share", "2", "fraction")):
        result = CliRunner().invoke(cli, ["run", "transfer", "--preset", "smoke", option, value, "--out",
                                          str(tmp_path)])
        assert result.exit_code == 2 and message in result.output, result.output


def test_datasets_are_brought_to_the_common_size(tmp_path: Path):
    from PIL import Image

    from secbench.data import load_dataset
    from secbench.scenarios.transfer import at_size, load_at_size

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    folder = load_at_size(f"imagefolder:{tmp_path}", 24)  # renders at any size: built at 24
    assert folder.train.images.shape[1:] == (3, 24, 24) and folder.classes == ("cat", "dog")
    digits = load_dataset("digits", n_train=50, n_test=20)
    small = at_size(digits, 16)  # a dataset of fixed size is resized
    assert small.train.images.shape == (50, 3, 16, 16) and small.test.images.shape == (20, 3, 16, 16)
    assert torch.equal(small.train.labels, digits.train.labels) and small.std != digits.std  # stats recomputed
    assert at_size(digits, 32) is digits
