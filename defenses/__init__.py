"""Everything the defender does: model watermarking, backdoor defenses, noisy-label learning.
Each defense registers itself with ``@register("defense", name)``."""

from defenses import backdoor, noisy_labels, watermark  # noqa: E402,F401  (registers)
