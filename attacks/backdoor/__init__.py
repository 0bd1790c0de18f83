"""Backdoor attacks: triggers behind one contract (:class:`BackdoorAttack`), poisoning, trigger-robustness
transformations. Each attack module registers itself with ``@register("attack", name)``.

Poison Ink (``poison_ink.py``, registered as ``poison-ink``) plugs in here: a ``BackdoorAttack`` whose
``prepare`` trains or loads its injection network and whose ``apply`` runs it.
"""

from attacks.backdoor import badnets, blended, sig, wanet  # noqa: F401  (registers)
from attacks.backdoor.base import BackdoorAttack, backdoor_attack_names, backdoor_class

__all__ = ["BackdoorAttack", "backdoor_attack_names", "backdoor_class"]
