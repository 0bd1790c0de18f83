"""Training recipes: how each model family trains when the user does not say otherwise.

A recipe fills every training field of a victim (``secbench/scenarios/victim.py``) left unset on the
command line or by a preset, so ``clean``, ``robustness`` and ``backdoor`` train MicroNet with SGD and
Mobile-Former with AdamW without being told, and the resolved values land in each result's config.
Recipes are the ``quick`` scale of the papers' (``source`` says which, and how it was scaled): tens of
thousands of 32×32 images on 2 CPU cores instead of hundreds of ImageNet epochs, same optimiser family
and schedule shape. ``--preset paper`` replaces them with BackdoorBench's victim protocol.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from secbench.errors import SecbenchError

RECIPES: dict[str, Recipe] = {}


@dataclass(frozen=True)
class Recipe:
    """One model family's ``quick`` training recipe (the victim fields it fills).

    ``lr`` is the peak learning rate, reached after ``warmup`` (a fraction of all steps) of linear rise;
    ``train_images`` is the budget in images seen; ``augment`` a comma list of engine augmentations.
    """

    optimizer: str
    lr: float
    weight_decay: float
    schedule: str
    warmup: float
    train_images: int
    batch_size: int = 128
    momentum: float = 0.9
    label_smoothing: float = 0.0
    augment: str = "crop,flip"
    source: str = ""  # the paper's recipe it scales, and how

    def fields(self) -> dict[str, object]:
        """The victim config fields this recipe sets (everything but ``source``)."""
        return {k: v for k, v in asdict(self).items() if k in RECIPE_FIELDS}


RECIPE_FIELDS = ("optimizer", "lr", "weight_decay", "schedule", "warmup", "train_images", "batch_size", "momentum",
                 "label_smoothing", "augment")


def add_recipe(recipe: Recipe, *names: str) -> Recipe:
    """Make ``recipe`` the default of every model in ``names`` (a model given two recipes raises)."""
    for name in names:
        if name in RECIPES:
            raise ValueError(f"model {name!r} has two training recipes")
        RECIPES[name] = recipe
    return recipe


def recipe_for(model: str) -> Recipe:
    """The registered recipe of ``model``; a model without one is a user-facing error."""
    from secbench import registry

    registry.get("model", model)  # an unknown name fails here, with the closest match; this also loads the zoo
    if model not in RECIPES:
        raise SecbenchError(f"model {model!r} has no training recipe; give --lr, --optimizer, --weight-decay, "
                            "--schedule, --warmup and --train-images")
    return RECIPES[model]
