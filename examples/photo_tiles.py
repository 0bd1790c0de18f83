"""Write a folder of 32×32 tiles from bundled photos that the ``patches`` dataset does not use, for
``secbench run watermark --dataset imagefolder:DIR`` (issue 13's check on photos nobody chose).

    python examples/photo_tiles.py /tmp/photo-tiles

Training tiles come from scikit-image's ``hubble_deep_field``, ``cell``, ``clock``, ``colorwheel``,
``page`` and ``text``, test tiles from ``retina`` and ``immunohistochemistry`` (disjoint photos, as in
``patches``), both overlapping (training tiles every 16 pixels, test tiles every 8). Test tiles with
fewer than 5% Sobel edge pixels are left out: the owner verifies with queries whose *answers* have
2% edge pixels (the scenario's ``--min-edges``), the derain model's answers are smoother than its
inputs, and most of retina is its flat black border (with a 2% filter on the inputs, 86 of 800
candidates had answers that qualified). Every tile is cut at the photo's own scale, so the
scenario's resize to 32×32 is the identity.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data

from secbench.imageops import edge_mask

SPLITS = {"train": ("hubble_deep_field", "cell", "clock", "colorwheel", "page", "text"),
          "test": ("retina", "immunohistochemistry")}
TILE = 32
STRIDE = {"train": 16, "test": 8}
MIN_TEST_EDGES = 0.05  # of the input, so that the model's smoother answer keeps the scenario's 2%


def main(out: Path) -> None:
    for split, names in SPLITS.items():
        folder = out / split / "photo"  # one class: the watermark scenario ignores labels
        folder.mkdir(parents=True, exist_ok=True)
        count = 0
        for name in names:
            image = np.asarray(getattr(data, name)())
            if image.ndim == 2:
                image = np.repeat(image[..., None], 3, axis=2)
            for r in range(0, image.shape[0] - TILE + 1, STRIDE[split]):
                for c in range(0, image.shape[1] - TILE + 1, STRIDE[split]):
                    tile = image[r : r + TILE, c : c + TILE, :3]
                    if split == "test" and edge_mask(torch.from_numpy(tile).permute(2, 0, 1)[None].float() / 255
                                                     ).float().mean() < MIN_TEST_EDGES:
                        continue
                    Image.fromarray(tile).save(folder / f"{name}-{r:04d}-{c:04d}.png")
                    count += 1
        print(f"{split}: {count} tiles of {', '.join(names)} in {folder}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python examples/photo_tiles.py OUT_DIR")
    main(Path(sys.argv[1]))
