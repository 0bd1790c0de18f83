"""Learning from noisy per-point labels: the robust-loss baselines (:mod:`.losses`: ``ce``, ``gce``,
``sce``) and PNAL (:mod:`.pnal`, arXiv 2107.14230), whose cluster-wise correction votes inside the
clusters of :mod:`.clusters`. Each is registered as a defense whose factory returns a
:class:`~defenses.noisy_labels.losses.Learner`, the ``item_loss`` of :func:`secbench.engine.fit`."""

from defenses.noisy_labels import clusters, losses, pnal  # noqa: F401  (registers)
