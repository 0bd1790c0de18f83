"""Model watermarking for image-processing networks: the owner's side.

- ``methods``: what each registered method hides and how its extractor is trained
  (``watermark-baseline``: Zhang et al., AAAI 2020; ``watermark-structure``: arXiv 2108.02360);
- ``owner``: training the embedder, extractor and discriminator (stage 1), the extractor's
  fine-tuning on a surrogate the owner trains itself (stage 2), marking outputs, verification.
"""

from defenses.watermark import methods  # noqa: F401  (registers)
from defenses.watermark.methods import WatermarkMethod
from defenses.watermark.owner import OwnerRecipe, Protection, protect

__all__ = ["OwnerRecipe", "Protection", "WatermarkMethod", "protect"]
