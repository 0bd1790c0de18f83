"""Write a folder of 32×32 tiles from bundled photos that the ``patches`` dataset does not use, for
``secbench run watermark --dataset imagefolder:DIR`` (issue 13's check on photos nobody chose).

    python examples/photo_tiles.py /tmp/photo-tiles

Training tiles come from scikit-image's ``retina`` and ``immunohistochemistry``, test tiles from
``hubble_deep_field``, ``cell`` and ``clock`` (disjoint photos, as in ``patches``); every tile is
cut at the photo's own scale, so the scenario's resize to 32×32 is the identity.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

SPLITS = {"train": ("retina", "immunohistochemistry"), "test": ("hubble_deep_field", "cell", "clock")}
TILE = 32


def main(out: Path) -> None:
    for split, names in SPLITS.items():
        folder = out / split / "photo"  # one class: the watermark scenario ignores labels
        folder.mkdir(parents=True, exist_ok=True)
        count = 0
        for name in names:
            image = np.asarray(getattr(data, name)())
            if image.ndim == 2:
                image = np.repeat(image[..., None], 3, axis=2)
            rows, cols = image.shape[0] // TILE, image.shape[1] // TILE
            for r in range(rows):
                for c in range(cols):
                    tile = image[r * TILE : (r + 1) * TILE, c * TILE : (c + 1) * TILE, :3]
                    Image.fromarray(tile).save(folder / f"{name}-{r:02d}-{c:02d}.png")
                    count += 1
        print(f"{split}: {count} tiles of {', '.join(names)} in {folder}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python examples/photo_tiles.py OUT_DIR")
    main(Path(sys.argv[1]))
