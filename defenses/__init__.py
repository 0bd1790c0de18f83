"""Everything the defender does: model watermarking, backdoor defenses, noisy-label learning.
Each defense registers itself with ``@register("defense", name)``."""
