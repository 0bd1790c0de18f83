"""Image transformations that test a trigger's robustness: at test time, and as extra victim augmentation.

The robustness columns of backdoor papers (Poison Ink's among them): does a poisoned image still
trigger the backdoor after an ordinary image operation? Each name is one albumentations transform
(``strict=True``) of a fixed strength, run through :class:`attacks.augment.PairAugmentation` for its
seeding. At test time every poisoned test image is transformed (``p = 1``); as victim augmentation
each training image is transformed with probability 0.5, on top of the victim's own crop and flip.

========= ================================================= =============================================
name      transform                                         why this strength
========= ================================================= =============================================
flip      horizontal mirror                                 Poison Ink's interference layer flips
crop      random square crop of 7/8 the side, resized back Poison Ink's crop 28 → resize 32
rotate    rotation by 15°, reflected border                 the mildest point of the watermark attack grid
resize    down to 1/2 (area), back up (bilinear)            the watermark grid's ×0.5
jpeg      JPEG quality 75                                   a common web quality
blur      Gaussian blur, σ = 1 px                           mid CIFAR-10-C blur severity
noise     Gaussian noise, σ = 0.03 (≈ 8/255)                the watermark grid's σ 0.03
color     ColorJitter brightness/contrast/saturation 0.2,   torchvision's usual jitter strengths
          hue 0.05
========= ================================================= =============================================
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import torch

from attacks.augment import A, PairAugmentation
from attacks.backdoor.poison import to_uint8
from secbench.errors import UnknownNameError

_SIDE = 7 / 8  # Poison Ink crops 28 of 32 pixels

# (image size (H, W), probability) -> the transform
TRANSFORMS: dict[str, Callable[[tuple[int, int], float], A.BasicTransform]] = {
    "flip": lambda size, p: A.HorizontalFlip(p=p, strict=True),
    "crop": lambda size, p: A.RandomResizedCrop(size=size, scale=(_SIDE**2, _SIDE**2), ratio=(1.0, 1.0), p=p,
                                                strict=True),
    "rotate": lambda size, p: A.Rotate(limit=(15, 15), border_mode=cv2.BORDER_REFLECT_101, p=p, strict=True),
    "resize": lambda size, p: A.Downscale(scale_range=(0.5, 0.5), p=p, strict=True,
                                          interpolation_pair={"downscale": cv2.INTER_AREA,
                                                              "upscale": cv2.INTER_LINEAR}),
    "jpeg": lambda size, p: A.ImageCompression(quality_range=(75, 75), p=p, strict=True),
    "blur": lambda size, p: A.GaussianBlur(blur_limit=0, sigma_limit=(1.0, 1.0), p=p, strict=True),
    "noise": lambda size, p: A.GaussNoise(std_range=(0.03, 0.03), p=p, strict=True),
    "color": lambda size, p: A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.05, p=p,
                                           strict=True),
}
TRAIN_PROBABILITY = 0.5


def parse_names(spec: str) -> list[str]:
    """``"rotate,jpeg"`` or ``"all"`` → the transform names; ``""`` → none; an unknown name raises."""
    names = list(TRANSFORMS) if spec.strip() == "all" else [n.strip() for n in spec.split(",") if n.strip()]
    for name in names:
        if name not in TRANSFORMS:
            raise UnknownNameError("transformation", name, (*TRANSFORMS, "all"))
    return names


def transformer(name: str, *, p: float = 1.0, seed: int = 0) -> PairAugmentation:
    """The transform ``name`` with probability ``p``; ``.images(uint8 (N, 3, H, W))`` applies it."""
    if name not in TRANSFORMS:
        raise UnknownNameError("transformation", name, TRANSFORMS)
    build = TRANSFORMS[name]
    return PairAugmentation(lambda size: [build(size, p)], seed)


def transform_images(images: torch.Tensor, name: str, *, seed: int) -> torch.Tensor:
    """uint8 ``(N, 3, H, W)`` → every image transformed by ``name``, reproducibly per seed."""
    offset = 1000 * list(TRANSFORMS).index(name)  # each transform its own random stream
    return transformer(name, seed=seed + offset).images(images)


class AugmentBatches:
    """A ``secbench.engine.fit`` batch hook: each image of a float batch in [0, 1] transformed by ``name``
    with probability 0.5 (through 8 bits, as the albumentations operations work on uint8)."""

    def __init__(self, name: str, *, seed: int):
        self.run = transformer(name, p=TRAIN_PROBABILITY, seed=seed)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.run.images(to_uint8(images)).to(images.device).float().div_(255), labels
