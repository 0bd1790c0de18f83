"""scikit-learn's handwritten digits (bundled, so always available offline) as small RGB images."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from secbench.data.base import DataSplits, ImageSet, fixed_split, make_splits, subsample
from secbench.errors import SecbenchError
from secbench.registry import register


@register("dataset", "digits")
def digits(
    *, seed: int = 0, n_train: int | None = None, n_test: int | None = None, img_size: int = 32
) -> DataSplits:
    """sklearn's 1,797 8×8 handwritten digits, upsampled, grey in RGB; fixed 80/20 split.

    Images are uint8 ``(N, 3, img_size, img_size)``: the 0..16 ink levels scaled to 0..255 after
    bilinear upsampling. ``seed`` only picks the stratified subsets when ``n_train``/``n_test``
    are smaller than the 1,437 / 360 images of the split.
    """
    from sklearn.datasets import load_digits

    if img_size < 8:
        raise SecbenchError(f"digits: img_size must be at least 8, got {img_size}")
    x, y = load_digits(return_X_y=True)
    ink = torch.from_numpy(x.reshape(-1, 1, 8, 8) / 16).float()
    ink = F.interpolate(ink, size=(img_size, img_size), mode="bilinear", align_corners=False)
    images = ink.mul(255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    train, test = fixed_split(ImageSet(images, torch.from_numpy(y.astype(np.int64))))
    return make_splits(
        "digits",
        subsample(train, n_train, seed),
        subsample(test, n_test, seed),
        tuple(str(d) for d in range(10)),
        "sklearn.datasets.load_digits (UCI optical recognition of handwritten digits)",
    )
