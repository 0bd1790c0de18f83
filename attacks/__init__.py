"""Everything the adversary does: augmentation attacks, surrogate theft, backdoor triggers,
adversarial examples, label noise. Each attack registers itself with ``@register("attack", name)``."""
