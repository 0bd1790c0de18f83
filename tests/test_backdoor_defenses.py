"""Backdoor defenses: the MAD outlier test, DER, Neural Cleanse's trigger search, and ``--defense all`` end to end."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import CornerTrojan
from torch import nn

from defenses.backdoor import backdoor_defense_names, defense_effectiveness
from defenses.backdoor.neural_cleanse import (
    ReversedTriggers,
    Unlearning,
    anomaly_index,
    flagged_labels,
    prune_for_trigger,
    reverse_all,
)
from secbench import store
from secbench.cli import cli
from secbench.config import resolve
from secbench.data.base import ImageSet
from secbench.engine import accuracy, predict
from secbench.scenarios.backdoor import Backdoor

CPU = torch.device("cpu")


def test_anomaly_index_is_mad_with_the_consistency_constant():
    norms = torch.tensor([10.0, 12.0, 14.0, 16.0, 2.0])  # median 12, |x - 12| = 2, 0, 2, 4, 10 -> MAD 2
    expected = torch.tensor([2, 0, 2, 4, 10]) / (1.4826 * 2)
    assert torch.allclose(anomaly_index(norms), expected.double())
    assert flagged_labels(norms) == [4]  # index 3.37 below the median; label 3 (1.35, above) is not
    even = torch.tensor([1.0, 2.0, 3.0, 4.0])  # numpy's median 2.5 (torch.median would say 2)
    assert torch.allclose(anomaly_index(even), torch.tensor([1.5, 0.5, 0.5, 1.5]).double() / (1.4826 * 1.0))
    big = torch.tensor([10.0, 12.0, 14.0, 16.0, 40.0])  # an outlier above the median is never flagged
    assert anomaly_index(big)[4] > 2 and flagged_labels(big) == []
    assert flagged_labels(torch.tensor([5.0, 5.0, 5.0, 1.0, 5.0])) == [3]  # zero MAD: any lower norm is an outlier


def test_der_rewards_asr_drop_and_penalises_clean_accuracy_drop():
    assert defense_effectiveness(clean_acc_before=0.9, clean_acc_after=0.9, asr_before=1.0, asr_after=0.0) == 1.0
    assert math.isclose(defense_effectiveness(clean_acc_before=0.9, clean_acc_after=0.7, asr_before=1.0,
                                              asr_after=0.2), (0.8 - 0.2 + 1) / 2)
    # gains never count: CA up or ASR up leaves DER at 0.5 (nothing removed, nothing lost)
    assert defense_effectiveness(clean_acc_before=0.8, clean_acc_after=0.9, asr_before=0.5, asr_after=0.6) == 0.5


# a model with a known backdoor whose smallest trigger is the bright 2x2 corner (class 2)
DETECTOR = CornerTrojan(target=2, size=2, threshold=0.8, weak=0.1, gain=20.0, sharpness=30.0)


def test_neural_cleanse_finds_the_planted_trigger_batched_and_sequential(one_thread):
    g = torch.Generator().manual_seed(0)
    data = ImageSet(torch.randint(0, 150, (64, 3, 8, 8), generator=g, dtype=torch.uint8), torch.zeros(64).long())
    batched = reverse_all(DETECTOR, data, 4, sequential=False, steps=150, seed=0, device=CPU)
    sequential = reverse_all(DETECTOR, data, 4, sequential=True, steps=150, seed=0, device=CPU)
    for triggers in (batched, sequential):
        assert triggers.masks.shape == (4, 1, 8, 8) and triggers.patterns.shape == (4, 3, 8, 8)
        assert triggers.norms.argmin() == 2 and triggers.success[2] >= 0.99
        corner = torch.zeros(8, 8, dtype=torch.bool)
        corner[-2:, -2:] = True
        mask = triggers.masks[2, 0]
        assert mask[corner].mean() > 3 * mask[~corner].mean()  # the mask sits on the corner
    # one label in the batch is optimised exactly as alone: same seed, same batches, no shared parameters
    assert torch.allclose(batched.masks[2], sequential.masks[2], atol=1e-4)


def test_unlearning_stamps_the_reversed_trigger_on_the_requested_share():
    g = torch.Generator().manual_seed(0)
    data = ImageSet(torch.randint(0, 150, (8, 3, 8, 8), generator=g, dtype=torch.uint8), torch.zeros(8).long())
    triggers = reverse_all(DETECTOR, data, 4, sequential=False, steps=2, seed=0, device=CPU)
    images, labels = torch.zeros(1000, 3, 8, 8), torch.arange(1000) % 4
    out, kept = Unlearning(triggers, [2], ratio=0.2, seed=0)(images, labels)
    stamped = (out - images).flatten(1).abs().amax(1) > 0
    assert torch.equal(kept, labels) and 150 < stamped.sum() < 250
    assert torch.allclose(out[stamped][0], triggers.masks[2] * triggers.patterns[2])


class _BrightPixelNet(nn.Module):
    """A conv net with a planted backdoor neuron: last-conv channels 0-2 pass the colour through (class c follows
    channel c), channel 3 fires only on near-white pixels and votes for class 2 with a large weight."""

    def __init__(self) -> None:
        super().__init__()
        self.last_conv = nn.Conv2d(3, 4, 1)
        self.head = nn.Linear(4, 3)
        with torch.no_grad():
            # channel 3: 20 x (mean colour - 0.9), so a white pixel gives 2 and an image up to 150/255 nothing
            self.last_conv.weight.copy_(torch.cat([torch.eye(3), torch.full((1, 3), 20 / 3)])[:, :, None, None])
            self.last_conv.bias.copy_(torch.tensor([0.0, 0.0, 0.0, -18.0]))
            self.head.weight.copy_(torch.cat([torch.eye(3), torch.tensor([[0.0], [0.0], [100.0]])], 1))
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.last_conv(x)).mean((2, 3)))


def test_pruning_mitigation_removes_the_channel_the_reversed_trigger_excites(one_thread):
    g = torch.Generator().manual_seed(0)
    model = _BrightPixelNet().eval()
    images = torch.randint(0, 150, (90, 3, 8, 8), generator=g, dtype=torch.uint8)
    clean = ImageSet(images, predict(model, images.float() / 255, device=CPU).argmax(1))  # the model is right on clean data
    corner = torch.zeros(1, 1, 8, 8)
    corner[..., -2:, -2:] = 1.0
    triggers = ReversedTriggers(labels=(0, 1, 2), masks=torch.cat([torch.zeros(2, 1, 8, 8), corner]),
                                patterns=torch.ones(3, 3, 8, 8), norms=torch.tensor([9.0, 9.0, 4.0]),
                                success=torch.ones(3))
    pruned_model, channels, success = prune_for_trigger(model, triggers, [2], clean, device=CPU)
    assert channels == [3]  # the planted neuron goes first and is enough
    assert success[0] == 1.0 and success[-1] < 0.05 and len(success) == 2
    assert accuracy(pruned_model, clean, device=CPU) == 1.0  # the colour channels are untouched


def test_defense_all_end_to_end_on_a_smoke_badnets_model(tmp_path: Path):
    args = ["run", "backdoor", "--preset", "smoke", "--attack", "badnets", "--defense", "all", "--n-train", "200",
            "--n-test", "60", "--device", "cpu", "--out", str(tmp_path)]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    records = {r["defense"]: r for r in store.load_records(tmp_path)}
    assert sorted(records) == backdoor_defense_names() and all(r["status"] == "ok" for r in records.values())
    for name, record in records.items():
        m = record["metrics"]
        assert all(0 <= m[k] <= 1 for k in ("clean_acc_before", "asr_before", "clean_acc_after", "asr_after", "der"))
        assert m["der"] == defense_effectiveness(clean_acc_before=m["clean_acc_before"], asr_before=m["asr_before"],
                                                 clean_acc_after=m["clean_acc_after"], asr_after=m["asr_after"])
        assert m["defense_s"] > 0 and record["derived"]["n_budget"] == 10  # 5% of 200 training images
        assert record["attack"] == "badnets" and record["defense"] == name
    nc = records["neural-cleanse"]
    assert len(nc["derived"]["nc_norms"]) == 10 and nc["metrics"]["nc_n_flagged"] == len(nc["derived"]["nc_flagged"])
    assert (tmp_path / nc["artifacts"] / "neural_cleanse_triggers.png").stat().st_size > 1000
    table = CliRunner().invoke(cli, ["report", str(tmp_path), "--scenario", "backdoor", "--format", "csv"])
    assert table.exit_code == 0, table.output
    assert "attacks x defenses" in table.stdout and "nc_target_flagged" in table.stdout


@pytest.mark.parametrize(("preset", "options", "label"), [
    ("quick", {"defense": "neural-cleanse", "nc_mitigation": "pruning"}, "neural-cleanse --nc-mitigation pruning"),
    ("quick", {"defense": "nad", "nad_lr": 0.1}, "nad --nad-lr 0.1"),
    ("paper", {"defense": "nad", "nad_lr": 0.1}, "nad"),  # the paper preset's own value
    ("smoke", {"defense": "neural-cleanse", "sequential": True, "defense_data": 0.1},
     "neural-cleanse --defense-data 0.1 --sequential"),
    ("quick", {"defense": "strip", "nc_steps": 5}, "strip"),  # another defense's setting
    ("quick", {"defense": "spectral-signatures", "poison_rate": 0.02}, "spectral-signatures"),  # in ``method``
    ("quick", {}, None),
])
def test_the_record_names_the_defense_with_the_settings_it_changes(preset, options, label):
    scenario = Backdoor()
    identity = scenario.identity(resolve(scenario.Config, scenario.presets, preset, options), preset)
    assert identity["defense"] == label


@pytest.mark.parametrize(("options", "message"), [(["--defense", "neural-clense"], "did you mean 'neural-cleanse'"),
                                                  (["--defense-data", "0"], "--defense-data must be in (0, 1]"),
                                                  (["--nc-mitigation", "prune"], "did you mean 'pruning'")])
def test_bad_defense_options_are_one_line_errors(options, message, tmp_path: Path):
    args = ["run", "backdoor", "--preset", "smoke", "--device", "cpu", "--out", str(tmp_path), *options]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().startswith("error:") and message in result.stderr
