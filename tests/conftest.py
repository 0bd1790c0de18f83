"""Shared fixtures: a results folder with known numbers (see ``build_results``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from secbench import store

HIGHER_IS_BETTER = {"clean_acc": True, "train_loss": False, "wm_success": True, "psnr_db": True}
# (model, seed, clean_acc, train_loss): cnn-s acc 0.92 ± 0.02, loss 0.2 ± 0.1; cnn-m acc 0.825 ± 0.0354
CLEAN = [
    ("cnn-s", 0, 0.90, 0.3),
    ("cnn-s", 1, 0.92, 0.2),
    ("cnn-s", 2, 0.94, 0.1),
    ("cnn-m", 0, 0.80, 0.4),
    ("cnn-m", 1, 0.85, 0.2),
]
# (attack, seed, wm_success, psnr_db): no attack 1.0 ± 0, crop 0.65 ± 0.0707, blur one seed 0.3 ± 0
WATERMARK = [
    (None, 0, 1.0, 40.0),
    (None, 1, 1.0, 42.0),
    ("crop", 0, 0.6, 40.0),
    ("crop", 1, 0.7, 42.0),
    ("blur", 0, 0.3, 40.0),
]


def make_record(
    scenario: str,
    model: str,
    seed: int,
    metrics: dict[str, float],
    *,
    attack: str | None = None,
    status: str = "ok",
) -> dict[str, Any]:
    """A store record shaped like the engine's; the config hash depends on the identity only."""
    identity = {
        "scenario": scenario,
        "preset": "quick",
        "dataset": "digits",
        "model": model,
        "method": None,
        "attack": attack,
        "defense": None,
        "seed": seed,
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return {
        "schema_version": 1,
        "run_id": f"{scenario}-{digest[:12]}",
        "status": status,
        "reason": None if status == "ok" else "loss became NaN",
        **identity,
        "scenario_version": 1,
        "metrics": metrics,
        "higher_is_better": {m: HIGHER_IS_BETTER[m] for m in metrics},
        "n": 360,
        "config": identity,
        "config_hash": f"sha256:{digest}",
        "provenance": {},
        "timing": {"started": "2026-01-01T00:00:00", "wall_s": 1.0, "peak_mem_mb": 10.0},
    }


def build_results(out_dir: Path) -> Path:
    """Two scenarios, several seeds, one stale record superseded by a re-run, one failed run."""
    store.append(
        out_dir, make_record("clean", "cnn-s", 0, {"clean_acc": 0.5, "train_loss": 9.0})
    )  # re-run below
    for model, seed, acc, loss in CLEAN:
        store.append(out_dir, make_record("clean", model, seed, {"clean_acc": acc, "train_loss": loss}))
    store.append(out_dir, make_record("clean", "cnn-m", 2, {}, status="failed"))
    for attack, seed, success, psnr in WATERMARK:
        store.append(
            out_dir, make_record("wm", "cnn-s", seed, {"wm_success": success, "psnr_db": psnr}, attack=attack)
        )
    return out_dir


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """clean: cnn-s clean_acc 0.90/0.92/0.94 (mean 0.92), cnn-m 0.80/0.85 and a failed run; wm: attacks."""
    return build_results(tmp_path / "runs")


@pytest.fixture(scope="module")
def one_thread():
    """Model tests run tiny batches: intra-op threads only add synchronisation, which a busy CI core makes slow."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class CornerTrojan(nn.Module):
    """A planted backdoor over 4 classes: a bright bottom-right ``size`` x ``size`` corner (mean above
    ``threshold``) answers ``target`` with logit ``gain``; otherwise weak logits (``weak`` x the channel means)
    follow the image's colour, so the answer is uncertain and moves with the input."""

    def __init__(self, target: int, size: int, threshold: float, weak: float, gain: float, sharpness: float):
        super().__init__()
        self.target, self.size, self.threshold = target, size, threshold
        self.weak, self.gain, self.sharpness = weak, gain, sharpness

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        corner = x[:, :, -self.size:, -self.size:].mean((1, 2, 3))
        logits = torch.stack([x[:, c].mean((1, 2)) for c in range(3)] + [x.mean((1, 2, 3))], 1) * self.weak
        onehot = torch.nn.functional.one_hot(torch.tensor(self.target), 4).float()
        return logits + self.gain * torch.sigmoid(self.sharpness * (corner - self.threshold))[:, None] * onehot
