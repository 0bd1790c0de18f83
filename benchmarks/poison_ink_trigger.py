"""What carries Poison Ink's backdoor: the hidden edge trigger, or the injection network's rendering?

Loads (or trains, the first time) the backdoored model of ``secbench run backdoor --attack poison-ink``
from the results folder ``--out`` and measures the ASR on the test images the scenario counts when the
injection network is given different trigger inputs, with the PSNR of each poisoned set:
- ``edges x ink``: the real trigger (the image's own Sobel edges in the poisoning green);
- ``other image's edges``: the edges of another test image, same ink (is it *the image's* structure?);
- ``other ink``: the image's edges in magenta instead of green (is it the colour?);
- ``blank``: no edges at all, only the network's re-rendering of the cover (is it the trigger at all?);
and, without the injection network, what a low-pass transformation alone does to clean images
(``tf_target_clean_blur`` of the scenario) for comparison.

    python benchmarks/poison_ink_trigger.py [--out /tmp/s3/bd] [--preset quick] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch  # noqa: E402

from attacks.backdoor.transforms import transform_images  # noqa: E402
from secbench.config import resolve  # noqa: E402
from secbench.engine import accuracy, seed_everything, select_device  # noqa: E402
from secbench.hiding import StructureMark  # noqa: E402
from secbench.hiding.marks import BLANK  # noqa: E402
from secbench.imageops import to_uint8  # noqa: E402
from secbench.metrics import psnr  # noqa: E402
from secbench.scenarios.backdoor import Backdoor  # noqa: E402
from secbench.scenarios.backdoored import BackdoorConfig, train_backdoored  # noqa: E402
from secbench.scenarios.base import RunContext  # noqa: E402

MAGENTA = (200 / 255, 40 / 255, 200 / 255)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs"), help="results folder whose cache holds the model")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = select_device(args.device)
    cfg = BackdoorConfig.from_dict({**resolve(Backdoor.Config, Backdoor.presets, args.preset, {"attack": "poison-ink"}),
                                    "device": device.type})
    ctx = RunContext(device=device, seed=args.seed, generator=seed_everything(args.seed),
                     artifacts=args.out / "bench", cache=args.out / "cache")
    backdoored = train_backdoored(cfg, ctx)
    attack, test, model = backdoored.attack, backdoored.test, backdoored.model
    covers = test.clean.floats().to(device)

    def ink(colour: tuple[float, float, float], images: torch.Tensor) -> torch.Tensor:
        mark = StructureMark(colour)
        return mark.expected(images, mark.sample_key(len(images), torch.Generator()))

    triggers = {
        "edges x ink (the trigger)": ink(attack.colour, covers),
        "other image's edges": ink(attack.colour, covers.roll(1, 0)),
        "other ink (magenta)": ink(MAGENTA, covers),
        "blank (no edges)": torch.full_like(covers, BLANK),
    }
    print(f"Poison Ink at {args.preset}, seed {args.seed}: {len(covers)} test images not of the target class")
    print(f"{'trigger input of the injection network':42} {'ASR':>6} {'PSNR dB':>8}")
    for what, trigger in triggers.items():
        images = to_uint8(attack.embed(covers, trigger).cpu())
        asr = accuracy(model, test.as_target(images), device=device)
        print(f"{what:42} {asr:6.3f} {psnr(test.clean.floats(), images.float().div(255)).mean().item():8.2f}")
    for name in ("blur", "jpeg", "resize"):
        clean = accuracy(model, test.as_target(transform_images(test.clean.images, name, seed=args.seed)), device=device)
        print(f"{'no network: clean images, ' + name:42} {clean:6.3f}")


if __name__ == "__main__":
    main()
