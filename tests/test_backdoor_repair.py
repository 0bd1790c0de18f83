"""Model-repair backdoor defenses: Fine-Pruning's masks and stop rule, NAD's attention maps and distillation,
ANP's perturbed neurons and its pruning of a planted backdoor neuron, and all three end to end."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from defenses.backdoor.anp import attach, optimize_masks, prune_neurons
from defenses.backdoor.fine_pruning import ChannelMask, prune_count
from defenses.backdoor.layers import last_conv_module, neuron_layers, recording, trunk_blocks
from defenses.backdoor.nad import Distillation, attention_loss, attention_map
from secbench import store
from secbench.cli import cli
from secbench.data.base import ImageSet
from secbench.engine import TrainConfig, fit, recalibrate_batchnorm
from secbench.errors import SecbenchError
from secbench.registry import create_model

CPU = torch.device("cpu")


def _random_set(n: int, size: int, classes: int, seed: int = 0) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    return ImageSet(torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8),
                    torch.randint(0, classes, (n,), generator=g))


def test_pruned_channels_output_exactly_zero_after_pruning_and_after_fine_tuning(one_thread):
    torch.manual_seed(0)
    model = create_model("cnn-s", num_classes=3, img_size=8)
    data = _random_set(48, 8, 3)
    layer = last_conv_module(model)
    mask = ChannelMask(128)
    layer.register_forward_hook(mask)
    pruned = torch.tensor([0, 5, 77, 127])
    mask.prune(pruned)
    before = model.classifier.weight.detach().clone()

    def last_conv_output(train: bool) -> torch.Tensor:
        model.train(train)
        with recording([layer]) as out, torch.no_grad():
            model(data.floats())
        return out[0]

    for train in (False, True):
        out = last_conv_output(train)
        assert torch.count_nonzero(out[:, pruned]) == 0 and torch.count_nonzero(out) > 0
    fit(model, data, TrainConfig(epochs=2, batch_size=16, lr=0.1, precise_bn=2), generator=torch.Generator().manual_seed(0),
        device=CPU)
    assert not torch.equal(model.classifier.weight, before)  # fine-tuning did change the model
    for train in (False, True):
        out = last_conv_output(train)
        assert torch.count_nonzero(out[:, pruned]) == 0 and torch.count_nonzero(out) > 0


def test_fine_pruning_stop_rule_keeps_the_last_count_within_the_drop():
    # linear decay: acc(k) = 1 - k / 100 over 100 channels, 1 channel per step -> prune 10 at a 10% budget
    kept, curve = prune_count(lambda k: 1 - k / 100, 100, 0.1)
    assert kept == 10 and max(curve) == 11  # the 11th channel is measured, breaks the rule, and stops the search
    # 512 channels: steps of 5 (1%); relative drop k / 200 -> 20 is the last count within 10%
    kept, curve = prune_count(lambda k: 0.8 * (1 - k / 200), 512, 0.1)
    assert kept == 20 and sorted(curve) == [0, 5, 10, 15, 20, 25]
    # the first violation stops it even if pruning more would recover
    kept, _ = prune_count(lambda k: {0: 1.0, 1: 0.95, 2: 0.5}.get(k, 1.0), 10, 0.1)
    assert kept == 1
    # a flat curve prunes all but the last step: never the whole layer
    assert prune_count(lambda k: 0.9, 128, 0.1)[0] == 127
    assert prune_count(lambda k: 0.9 - 0.1 * (k > 0), 128, 0.0)[0] == 0


def test_attention_map_of_a_known_tensor():
    a = torch.tensor([[[[1.0, 2.0], [0.0, 0.0]], [[1.0, 0.0], [2.0, 0.0]]]])  # (1, 2, 2, 2)
    # mean over channels of a^2: [1, 2, 2, 0]; L2 norm 3
    assert torch.allclose(attention_map(a), torch.tensor([[1 / 3, 2 / 3, 2 / 3, 0.0]]), atol=1e-6)
    assert torch.allclose(attention_map(-a), attention_map(a))  # |a|: the sign does not matter
    assert torch.allclose(attention_map(a, p=1.0), torch.tensor([[1.0, 1.0, 1.0, 0.0]]) / math.sqrt(3), atol=1e-6)
    assert torch.allclose(attention_map(5 * a), attention_map(a), atol=1e-6)  # scale-free
    one, other = torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)
    one[0, 0, 0, 0], other[0, 0, 0, 1] = 3.0, 7.0
    assert attention_loss(a, a).item() == 0.0
    assert math.isclose(attention_loss(one, other).item(), 0.5, rel_tol=1e-5)  # maps e1 and e2: (1 + 1) / 4
    with pytest.raises(SecbenchError, match="nad needs"):
        attention_map(torch.ones(2, 3))


def test_distillation_trains_the_student_against_a_frozen_teacher(one_thread):
    torch.manual_seed(0)
    student, teacher = create_model("cnn-s", num_classes=3, img_size=8), create_model("cnn-s", num_classes=3, img_size=8)
    teacher_state = {k: v.clone() for k, v in teacher.state_dict().items()}
    wrapper = Distillation(student, teacher, blocks=3, betas=(500.0, 1000.0, 1000.0), p=2.0)
    assert {id(p) for p in wrapper.parameters()} == {id(p) for p in student.parameters()}
    x = _random_set(8, 8, 3).floats()
    wrapper.train()
    logits = wrapper(x)
    with recording(trunk_blocks(student, 3)) as s, recording(trunk_blocks(teacher, 3)) as t, torch.no_grad():
        student(x)
        teacher(x)
    expected = sum(b * attention_loss(a, c) for b, a, c in zip((500.0, 1000.0, 1000.0), s, t, strict=True))
    assert logits.shape == (8, 3) and wrapper.at_loss.item() > 0
    assert math.isclose(wrapper.at_loss.item(), expected.item(), rel_tol=1e-4)
    assert not teacher.training  # the teacher stays in eval mode (its BN statistics fixed)
    data = _random_set(32, 8, 3)
    fit(wrapper, data, TrainConfig(epochs=1, batch_size=16, lr=0.01), generator=torch.Generator().manual_seed(0), device=CPU,
        loss_fn=lambda out, y: F.cross_entropy(out, y) + wrapper.at_loss)
    assert all(torch.equal(v, teacher_state[k]) for k, v in teacher.state_dict().items())


def test_anp_neurons_scale_weight_and_bias_as_the_authors_batchnorm():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-1, 1)
    x = torch.rand(16, 3, 4, 4)
    reference = model(x)  # train mode: batch statistics
    weight, bias = model[1].weight.detach().clone(), model[1].bias.detach().clone()
    (name, neurons), = attach(model)
    assert name == "1" and torch.allclose(model(x), reference)  # mask 1, unperturbed: the same network
    with torch.no_grad():
        neurons.mask.copy_(torch.tensor([1.0, 0.5, 0.0, 1.0]))
        neurons.noise.copy_(torch.tensor([0.4, -0.4, 0.1, 0.0]))
        neurons.noise_bias.copy_(torch.tensor([0.0, 0.2, -0.4, 0.3]))
    conv = model[0](x)
    clean = F.batch_norm(conv, None, None, weight * neurons.mask.detach(), bias, training=True)
    assert torch.allclose(model(x), clean, atol=1e-5)
    neurons.perturbed = True
    perturbed = F.batch_norm(conv, None, None, weight * (neurons.mask + neurons.noise).detach(),
                             bias * (1 + neurons.noise_bias).detach(), training=True)
    assert torch.allclose(model(x), perturbed, atol=1e-5)
    # a model without BN: the conv channels are the neurons
    assert [n for n, _ in neuron_layers(nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU()))] == ["0"]
    with pytest.raises(SecbenchError, match="anp needs"):
        neuron_layers(nn.Sequential(nn.Flatten(), nn.Linear(3, 2)))


class _Planted(nn.Module):
    """Two classes: 1 when the red channel outweighs the green. A 1x1 conv feeds 4 BN-ReLU neurons: red-green
    (votes 1), green-red (votes 0), red+green (no vote) and blue, the planted backdoor neuron: BN bias -2 keeps it
    silent on clean images (blue <= 0.2) and a bright blue trigger fires it, voting 0 with weight 10."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[1.0, -1, 0], [-1, 1, 0], [1, 1, 0], [0, 0, 1]])[:, :, None, None])
            self.bn.bias.copy_(torch.tensor([0.0, 0.0, 0.0, -2.0]))
            self.head.weight.copy_(torch.tensor([[0.0, 5, 0, 10], [5, 0, 0, 0]]))
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.bn(self.conv(x))).mean((2, 3)))


def test_anp_prunes_the_planted_backdoor_neuron(one_thread):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(256, 3, 4, 4, generator=g)
    images[:, 2] *= 0.2
    labels = (images[:, 0].mean((1, 2)) > images[:, 1].mean((1, 2))).long()
    clean = ImageSet((images * 255).round().to(torch.uint8), labels)
    model = _Planted()
    recalibrate_batchnorm(model, clean, batches=4, batch_size=64, generator=g, device=CPU)
    triggered = clean.floats().clone()
    triggered[:, 2] = 1.0
    model.eval()
    ones = labels == 1
    assert (model(triggered).argmax(1)[ones] == 0).float().mean() > 0.9  # the backdoor works
    assert (model(clean.floats()).argmax(1) == labels).float().mean() > 0.9
    masks = optimize_masks(model, clean, iterations=60, eps=0.4, alpha=0.2, lr=0.2, augment=(), seed=0, device=CPU)
    mask = masks["bn"]
    assert mask.argmin() == 3 and mask[3] <= 0.2 and mask[:3].min() > 0.5
    assert torch.equal(model.bn.weight, torch.ones(4))  # the masks were learnt on a copy
    assert prune_neurons(model, masks, 0.2) == 1
    assert model.bn.weight.tolist() == [1.0, 1.0, 1.0, 0.0] and model.bn.bias[3] == -2.0  # the bias is kept
    assert (model(triggered).argmax(1)[ones] == 0).float().mean() < 0.1  # the backdoor is gone
    assert (model(clean.floats()).argmax(1) == labels).float().mean() > 0.9


def test_repair_defenses_end_to_end_on_a_smoke_badnets_model(tmp_path: Path):
    args = ["run", "backdoor", "--preset", "smoke", "--attack", "badnets", "--defense", "fine-pruning,nad,anp",
            "--n-train", "200", "--n-test", "60", "--device", "cpu", "--out", str(tmp_path)]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    records = {r["defense"]: r for r in store.load_records(tmp_path)}
    assert sorted(records) == ["anp", "fine-pruning", "nad"] and all(r["status"] == "ok" for r in records.values())
    for record in records.values():
        m = record["metrics"]
        assert all(0 <= m[k] <= 1 for k in ("clean_acc_before", "asr_before", "clean_acc_after", "asr_after", "der"))
        assert m["defense_s"] > 0
    fp = records["fine-pruning"]
    m, d = fp["metrics"], fp["derived"]
    assert d["fp_layer"] == "stages.3" and d["fp_layer_channels"] == 128  # cnn-s: its last conv block
    assert 0 <= m["fp_pruned"] < 1 and m["fp_pruned"] == m["fp_channels"] / 128 == len(d["fp_pruned_channels"]) / 128
    curve = dict(d["fp_budget_acc_curve"])
    assert curve[int(m["fp_channels"])] >= 0.9 * curve[0] - 1e-9  # prune_drop 0.1 held on the defender's data
    assert records["nad"]["derived"]["nad_blocks"] == ["stages.1", "stages.2", "stages.3"]
    anp = records["anp"]
    assert 0 <= anp["metrics"]["anp_pruned"] <= 1 and anp["derived"]["anp_total_neurons"] == 16 + 32 + 64 + 128
    assert anp["metrics"]["anp_neurons"] == sum(anp["derived"]["anp_pruned_per_layer"].values())


def test_bad_repair_options_are_one_line_errors(tmp_path: Path):
    args = ["run", "backdoor", "--preset", "smoke", "--device", "cpu", "--out", str(tmp_path), "--anp-iterations", "0"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().startswith("error:") and "--anp-iterations" in result.stderr
