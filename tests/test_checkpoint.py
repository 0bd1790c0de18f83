"""Checkpoints and cache entries that were truncated, flipped or swapped are found before they are loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from secbench import checkpoint
from secbench.cli import cli
from secbench.errors import SecbenchError
from secbench.registry import create_model

BUILD = {"num_classes": 3, "img_size": 8}


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("cnn-s", **BUILD)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) - 5] ^= 0x01  # inside the tensor data: the file stays valid safetensors or JSON
    path.write_bytes(bytes(data))


def _edit_json(path: Path) -> None:
    payload = json.loads(path.read_text())
    payload["tampered"] = True
    path.write_text(json.dumps(payload))


DAMAGES = {"truncated": _truncate, "flipped": _flip}


def test_checkpoint_round_trip_records_the_weights_digest(tmp_path):
    model = _model(0)
    weights = checkpoint.save(model, tmp_path / "model", name="cnn-s", **BUILD)
    sidecar = json.loads((tmp_path / "model.json").read_text())
    assert sidecar["weights"] == {"bytes": weights.stat().st_size, **{"sha256": checkpoint.digest(weights)["sha256"]}}
    loaded = checkpoint.load(tmp_path / "model")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True))


@pytest.mark.parametrize("damage", ["truncated", "flipped", "replaced", "sidecar-flipped", "sidecar-missing"])
def test_damaged_checkpoint_is_one_error_never_loaded(damage, tmp_path):
    checkpoint.save(_model(0), tmp_path / "model", name="cnn-s", **BUILD)
    weights, sidecar = tmp_path / "model.safetensors", tmp_path / "model.json"
    if damage in DAMAGES:
        DAMAGES[damage](weights)
    elif damage == "replaced":  # another model's valid weights under the same name
        checkpoint.save(_model(1), tmp_path / "other", name="cnn-s", **BUILD)
        (tmp_path / "other.safetensors").replace(weights)
    elif damage == "sidecar-flipped":
        sidecar.write_text(sidecar.read_text().replace('"cnn-s"', '"cnn-s" "'))
    else:
        sidecar.unlink()
    with pytest.raises(SecbenchError, match="checkpoint"):
        checkpoint.load(tmp_path / "model")


@pytest.mark.parametrize("file", ["model.safetensors", "model.json", "history.json", "manifest.json"])
@pytest.mark.parametrize("damage", ["truncated", "flipped", "edited", "removed", "added"])
def test_damaged_cache_entry_is_discarded_for_retraining(file, damage, tmp_path):
    entry = tmp_path / "cache" / "victim-x"
    checkpoint.save_entry(entry, _model(0), {"loss": [1.0, 0.5]}, name="cnn-s", **BUILD)
    assert checkpoint.load_entry(entry) is not None
    path = entry / file
    if damage == "removed":
        path.unlink()
    elif damage == "added":
        (entry / "stray.bin").write_bytes(b"x")
    elif damage == "edited":
        if file.endswith(".json"):
            _edit_json(path)
        else:
            checkpoint.save(_model(1), tmp_path / "other", name="cnn-s", **BUILD)
            (tmp_path / "other.safetensors").replace(path)
    else:
        DAMAGES[damage](path)
    with pytest.warns(UserWarning, match="is damaged .* discarded and retrained"):
        assert checkpoint.load_entry(entry) is None
    assert not entry.exists()


def test_damaged_module_cache_is_discarded(tmp_path):
    entry = tmp_path / "cache" / "hiding"
    checkpoint.save_modules(entry, {"net": _model(0)}, {"steps": 3})
    net = _model(1)
    assert checkpoint.load_modules(entry, {"net": net}) == {"steps": 3}
    _flip(entry / "net.safetensors")
    with pytest.warns(UserWarning, match="net.safetensors differs from its manifest"):
        assert checkpoint.load_modules(entry, {"net": _model(2)}) is None


def test_a_run_retrains_a_damaged_cached_victim(tmp_path):
    args = ["run", "clean", "--preset", "smoke", "--dataset", "digits", "--device", "cpu", "--out", str(tmp_path)]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    (entry,) = (tmp_path / "cache").iterdir()
    _flip(entry / "model.safetensors")
    again = CliRunner().invoke(cli, [*args, "--force"])
    assert again.exit_code == 0, again.output
    assert "warning: cache entry" in again.stderr and "retrained" in again.stderr
    assert "Traceback" not in again.output
    assert checkpoint.intact(entry)  # published again by the retraining
