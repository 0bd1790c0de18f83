"""STRIP's entropy and threshold, Spectral Signatures' and Activation Clustering's filters on planted
poison, and the three defenses end to end through the CLI."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import CornerTrojan

from defenses.backdoor.activation_clustering import cluster_filter
from defenses.backdoor.filtering import removal_scores
from defenses.backdoor.spectral_signatures import spectral_filter, spectral_scores
from defenses.backdoor.strip import gaussian_threshold, strip_entropy, superimpose
from secbench import store
from secbench.cli import cli
from secbench.errors import SecbenchError
from secbench.scenarios.backdoored import BackdoorConfig

CPU = torch.device("cpu")


def test_gaussian_threshold_rejects_the_requested_share_of_clean_inputs():
    entropies = 2.0 + 0.3 * torch.randn(20_000, generator=torch.Generator().manual_seed(0))
    threshold = gaussian_threshold(entropies, 0.01)
    assert math.isclose(threshold, entropies.double().mean().item() - 2.3263 * entropies.double().std().item(),
                        rel_tol=1e-4)
    assert 0.008 < (entropies < threshold).double().mean().item() < 0.012
    assert 0.045 < (entropies < gaussian_threshold(entropies, 0.05)).double().mean().item() < 0.055


# a white 3x3 corner answers class 0 with confidence; otherwise the colour decides, weakly
TROJAN = CornerTrojan(target=0, size=3, threshold=0.9, weak=2.0, gain=40.0, sharpness=40.0)


def test_strip_entropy_is_low_for_trojaned_inputs_and_bounded(one_thread):
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(0, 120, (40, 3, 8, 8), generator=g, dtype=torch.uint8)
    trojaned = clean.clone()
    trojaned[:, :, -3:, -3:] = 255
    pool = torch.randint(0, 120, (30, 3, 8, 8), generator=g, dtype=torch.uint8)
    h_clean = strip_entropy(TROJAN, clean, pool, n=10, generator=g, device=CPU)
    h_trojan = strip_entropy(TROJAN, trojaned, pool, n=10, generator=g, device=CPU)
    assert h_clean.shape == h_trojan.shape == (40,)
    assert ((h_clean >= 0) & (h_clean <= 2 + 1e-6)).all() and (h_trojan >= 0).all()  # log2 of 4 classes
    assert h_trojan.max() < 0.1 < 0.5 < h_clean.min()  # the white corner survives the saturating sum
    assert torch.equal(superimpose(torch.full((1, 3, 2, 2), 0.7), torch.full((1, 3, 2, 2), 0.6)), torch.ones(1, 3, 2, 2))
    with pytest.raises(SecbenchError, match="--strip-n 31 exceeds the 30"):
        strip_entropy(TROJAN, clean, pool, n=31, generator=g, device=CPU)


def _planted(n: int, poisoned_share: float, dim: int, shift: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` standard-normal features of which the first ``poisoned_share`` are shifted by ``shift`` along one direction."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n, dim, generator=g)
    direction = torch.randn(dim, generator=g)
    poisoned = torch.arange(n) < round(poisoned_share * n)
    features[poisoned] += shift * direction / direction.norm()
    return features, poisoned


def test_spectral_signatures_remove_a_planted_outlier_cluster():
    features, poisoned = _planted(400, 0.1, 32, 8.0, seed=1)
    scores = spectral_scores(features)
    assert scores[poisoned].min() > scores[~poisoned].median()
    clean_class, _ = _planted(300, 0.0, 32, 0.0, seed=2)
    labels = torch.cat([torch.zeros(400), torch.ones(300)]).long()
    truth = torch.cat([poisoned, torch.zeros(300, dtype=torch.bool)])
    removed = spectral_filter(torch.cat([features, clean_class]), labels, remove_fraction=0.15)
    assert removed[:400].sum() == 60 and removed[400:].sum() == 45  # round(0.15 n) per class
    result = removal_scores(removed, truth)
    assert result["recall"] == 1.0 and math.isclose(result["precision"], 40 / 105)
    assert result["n_removed"] == 105


def test_activation_clustering_finds_a_planted_cluster_and_spares_a_clean_class():
    features, poisoned = _planted(300, 0.15, 16, 12.0, seed=3)
    clean_class, _ = _planted(300, 0.0, 16, 0.0, seed=4)
    labels = torch.cat([torch.full((300,), 2), torch.full((300,), 5)]).long()
    removed, flagged = cluster_filter(torch.cat([features, clean_class]), labels, dims=10, size_threshold=0.35, seed=0)
    truth = torch.cat([poisoned, torch.zeros(300, dtype=torch.bool)])
    result = removal_scores(removed, truth)
    assert result["recall"] >= 0.95 and result["precision"] >= 0.95
    assert list(flagged) == [2] and math.isclose(flagged[2], 0.15, abs_tol=0.01)


def test_filters_refuse_the_training_controlled_threat_model():
    with pytest.raises(SecbenchError, match="spectral-signatures filters the training set"):
        BackdoorConfig(defense="strip,spectral-signatures", threat_model="training-controlled")
    # all: only the defenses that apply
    names = BackdoorConfig(defense="all", threat_model="training-controlled").defenses()
    assert "strip" in names and "spectral-signatures" not in names and "activation-clustering" not in names


def test_strip_and_filters_end_to_end_on_a_smoke_badnets_model(tmp_path: Path):
    args = ["run", "backdoor", "--preset", "smoke", "--attack", "badnets", "--defense",
            "strip,spectral-signatures,activation-clustering", "--n-train", "200", "--n-test", "60", "--device", "cpu",
            "--out", str(tmp_path)]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    records = {r["defense"]: r for r in store.load_records(tmp_path)}
    assert sorted(records) == ["activation-clustering", "spectral-signatures", "strip"]
    assert all(r["status"] == "ok" for r in records.values())
    strip = records["strip"]
    assert all(0 <= strip["metrics"][k] <= 1 for k in ("strip_far", "strip_frr", "strip_auroc"))
    assert strip["derived"]["strip_n_calibration"] == 5 and strip["derived"]["strip_n_pool"] == 5  # budget 10, halved
    assert strip["metrics"]["clean_acc_after"] <= strip["metrics"]["clean_acc_before"]  # a rejected input gets no answer
    assert (tmp_path / strip["artifacts"] / "strip_entropy.png").stat().st_size > 1000
    n_poisoned = round(0.1 * 180)  # rate 0.1 of the 180 images not of the target class
    for prefix, name in (("ss", "spectral-signatures"), ("ac", "activation-clustering")):
        m = records[name]["metrics"]
        assert 0 <= m[f"{prefix}_precision"] <= 1 and 0 <= m[f"{prefix}_recall"] <= 1
        found = m[f"{prefix}_recall"] * n_poisoned
        assert math.isclose(found, round(found), abs_tol=1e-6) and found <= m[f"{prefix}_n_removed"]
        assert records[name]["derived"][f"{prefix}_retrained"] == (m[f"{prefix}_n_removed"] > 0)
    assert records["spectral-signatures"]["derived"]["ss_eps"] == 0.1  # the attack's poison rate by default
