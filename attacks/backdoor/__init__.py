"""Backdoor attacks: triggers behind one contract (:class:`BackdoorAttack`), poisoning, trigger-robustness
transformations. Each attack module registers itself with ``@register("attack", name)``.

Poison Ink (``poison_ink.py``, ``poison-ink``) is a ``BackdoorAttack`` whose ``prepare`` trains or loads its
injection network (``secbench.hiding``, shared with the structure watermark) and whose ``apply`` runs it.
"""

from attacks.backdoor import badnets, blended, poison_ink, sig, wanet  # noqa: F401  (registers)
from attacks.backdoor.base import BackdoorAttack, backdoor_attack_names, backdoor_class

__all__ = ["BackdoorAttack", "backdoor_attack_names", "backdoor_class"]
