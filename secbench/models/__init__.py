"""Classifier models. Every model takes ``(N, 3, H, W)`` floats in [0, 1] and returns ``(N, num_classes)``
logits; normalisation is the model's first op (:class:`~secbench.models.layers.Normalize`).

Each family lives in its own module and registers its builders with ``@register("model", name)``;
importing this package imports them all, so ``secbench.registry.create_model(name, ...)`` finds them:
``cnn-s`` (:mod:`.cnn`), ``resnet18`` and ``preact-resnet18`` (:mod:`.resnet`), ``mobilenet-v3-small``
(:mod:`.mobilenet`), ``micronet-m0..m3`` (:mod:`.micronet`), ``mobile-former-26m..508m``
(:mod:`.mobile_former`), ``cswin-t/s/b/l`` (:mod:`.cswin`). Every model exposes
``features(x) -> (N, D)``, ``classifier`` (an ``nn.Linear`` with ``in_features == D``) and ``last_conv``
(the block whose output is pooled into the features, for Fine-Pruning); ``tests/test_models.py`` checks
this surface for every registered model, plugins included. The Dynamic Head block (:mod:`.dyhead`) is a
detection head over a feature pyramid, not a classifier, and is not registered; the ATSS detector that uses it
(:mod:`.detector`) is registered as ``detector``. The point-cloud
segmentation networks (:mod:`.pointseg`: ``dgcnn``, ``pointnet``) are registered as ``segmenter``, not
``model``: they map point blocks, not images, to per-point logits.
"""

from secbench.models import cnn, cswin, detector, micronet, mobile_former, mobilenet, pointseg, resnet
from secbench.models.layers import ConvClassifier, Normalize

__all__ = ["ConvClassifier", "Normalize", "cnn", "cswin", "detector", "micronet", "mobile_former", "mobilenet", "pointseg", "resnet"]
