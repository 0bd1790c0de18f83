"""STRIP (Gao et al., "STRIP: A Defence Against Trojan Attacks on Deep Neural Networks", ACSAC 2019): a
run-time input filter. A trigger dominates whatever it is mixed with, so a trojaned input keeps its
(target) prediction under strong perturbation, while a clean input's prediction scatters.

Each input is superimposed with N clean images drawn at random (without replacement) from the defender's
budget and its score is the mean, over the N, of the prediction entropy −Σ p·log₂ p (bits, in
[0, log₂ K]). Superimposition is the authors' ``cv2.addWeighted(background, 1, overlay, 1, 0)``: the
plain sum, here saturating at white (``min(1, x + x')``, as OpenCV does for 8-bit images, so the input
stays in the model's [0, 1] range). Kept rather than BackdoorBench's ``x + 0.5·x'`` or an average because
it is the blending the published FAR/FRR were measured with. The budget is split (from the seed): ``strip_calibration``
of it are the held-out clean inputs whose entropies set the threshold, the rest the superimposed images,
so no calibration input is ever mixed with itself. As in the paper the clean entropies are taken to be
normal: the threshold is their mean + std·Φ⁻¹(FRR), for a preset FRR of 1%; an input below it is
rejected as trojaned. The model is deployed unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from defenses.backdoor.base import BackdoorDefense, DefenseInputs, DefenseResult  # noqa: E402
from secbench.engine import predict  # noqa: E402
from secbench.errors import SecbenchError  # noqa: E402
from secbench.metrics import auroc  # noqa: E402
from secbench.progress import NullProgress, Progress  # noqa: E402
from secbench.registry import register  # noqa: E402

if TYPE_CHECKING:
    from torch import nn

    from secbench.scenarios.base import RunContext

_CHUNK = 4096  # superimposed images per forward batch group: bounds memory whatever N is


def superimpose(images: torch.Tensor, overlays: torch.Tensor) -> torch.Tensor:
    """The paper's additive blend of float images in [0, 1], saturating: ``min(1, x + x')``, same shape."""
    return (images + overlays).clamp_(max=1.0)


def strip_entropy(model: nn.Module, inputs: torch.Tensor, pool: torch.Tensor, *, n: int, generator: torch.Generator,
                  device: torch.device, progress: Progress | None = None, description: str = "strip") -> torch.Tensor:
    """Mean prediction entropy (bits) of each of ``inputs`` (uint8 ``(M, C, H, W)``) superimposed with ``n``
    distinct images drawn from ``pool`` (uint8 ``(P, C, H, W)``, P ≥ n): ``(M,)`` in [0, log₂ K]."""
    if n > len(pool):
        raise SecbenchError(f"--strip-n {n} exceeds the {len(pool)} clean images left to superimpose; "
                            "lower it or raise --defense-data")
    progress = progress or NullProgress()
    pool_f = pool.to(device).float().div_(255)
    step = max(1, _CHUNK // n)
    out = []
    with progress.task(description, total=len(inputs)) as bar:
        for start in range(0, len(inputs), step):
            x = inputs[start : start + step].to(device).float().div_(255)
            # n distinct overlays per input: the first n of a random permutation of the pool
            picks = torch.rand(len(x), len(pool), generator=generator).argsort(1)[:, :n].to(device)
            mixed = superimpose(x[:, None], pool_f[picks]).flatten(0, 1)
            probs = predict(model, mixed, device=device).softmax(1)
            entropy = -(probs * probs.clamp_min(1e-12).log2()).sum(1)
            out.append(entropy.view(len(x), n).mean(1))
            bar.advance(len(x))
    return torch.cat(out)


def gaussian_threshold(entropies: torch.Tensor, frr: float) -> float:
    """The entropy below which a share ``frr`` of clean inputs falls, for a normal fitted to ``entropies``
    ``(n,)``, n ≥ 2 (mean, unbiased std): ``mean + std·Φ⁻¹(frr)``."""
    x = entropies.double()
    return (x.mean() + x.std() * torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(frr, dtype=torch.float64))).item()


def save_histogram(clean: torch.Tensor, poisoned: torch.Tensor, threshold: float, path: Path) -> Path:
    """Entropy histograms of clean and poisoned test inputs with the threshold, one PNG."""
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    top = max(clean.max().item(), poisoned.max().item(), threshold) + 1e-6
    bins = torch.linspace(0, top, 41).tolist()
    ax.hist(clean.numpy(), bins=bins, alpha=0.6, label="clean test", density=True)
    ax.hist(poisoned.numpy(), bins=bins, alpha=0.6, label="poisoned test", density=True)
    ax.axvline(threshold, color="black", linestyle="--", label="threshold")
    ax.set_xlabel("mean entropy under superimposition (bits)")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    ax.set_title("STRIP: inputs below the threshold are rejected", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


@register("defense", "strip")
@dataclass(kw_only=True)
class Strip(BackdoorDefense):
    """STRIP (ACSAC 2019): reject inputs whose prediction entropy under superimposition is abnormally low.

    Args:
        strip_n: clean images superimposed on each input (the commonly used 100).
        strip_frr: the preset false-rejection rate on clean inputs that sets the threshold (the paper's 1%).
        strip_calibration: share of the defender's clean budget held out to calibrate the threshold.
    """

    name: ClassVar[str] = "strip"
    strip_n: int = 100
    strip_frr: float = 0.01
    strip_calibration: float = 0.5

    def run(self, inputs: DefenseInputs, ctx: RunContext) -> DefenseResult:
        budget = inputs.budget.images
        order = torch.randperm(len(budget), generator=torch.Generator().manual_seed(self.seed))
        n_cal = round(self.strip_calibration * len(budget))
        if n_cal < 2 or n_cal >= len(budget):
            raise SecbenchError(f"strip: {len(budget)} clean images cannot be split into >= 2 for calibration and "
                                "some to superimpose; raise --defense-data")
        calibration, pool = budget[order[:n_cal]], budget[order[n_cal:]]
        generator = torch.Generator().manual_seed(self.seed)

        def entropy(images: torch.Tensor, what: str) -> torch.Tensor:
            return strip_entropy(inputs.model, images, pool, n=self.strip_n, generator=generator, device=ctx.device,
                                 progress=ctx.progress, description=f"strip: entropy of {what}")

        threshold = gaussian_threshold(entropy(calibration, "held-out clean inputs"), self.strip_frr)
        clean, poisoned = entropy(inputs.test.images, "clean test"), entropy(inputs.poisoned_test.images, "poisoned test")
        save_histogram(clean, poisoned, threshold, ctx.artifacts / "strip_entropy.png")
        clean_ok, poisoned_ok = clean >= threshold, poisoned >= threshold
        metrics = {"strip_far": poisoned_ok.float().mean().item(), "strip_frr": (~clean_ok).float().mean().item(),
                   "strip_auroc": auroc(-poisoned, -clean)}  # low entropy means trojaned
        better = {"strip_far": False, "strip_frr": False, "strip_auroc": True}
        derived = {"strip_threshold": round(threshold, 5), "strip_n_calibration": n_cal, "strip_n_pool": len(pool),
                   "strip_entropy_clean_mean": round(clean.mean().item(), 5),
                   "strip_entropy_poisoned_mean": round(poisoned.mean().item(), 5)}
        return DefenseResult(inputs.model, metrics, better, derived, accepted=(clean_ok, poisoned_ok))
