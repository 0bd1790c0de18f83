"""Everything the adversary does: augmentation attacks, surrogate theft, backdoor triggers,
adversarial examples, label noise. Each attack registers itself with ``@register("attack", name)``."""

from attacks import adversarial, augment, backdoor, corruptions, label_noise, surrogate  # noqa: E402,F401  (registers)
