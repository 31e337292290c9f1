"""What the equal-budget protocol shares across methods, and what stays a method's own recipe.

Equal budget means the same data, epochs, batch, optimiser, schedule and evaluator for every row.
A contrastive stage is the one place where sharing would silently cripple a method: its two views
ARE the method (a contrastive loss between two nearly identical views learns little), and a
backbone lr scale meant for fine-tuning a pretrained encoder starves the encoder that is the only
part a contrastive stage keeps. So under ``budget.contrastive_recipe: method`` (the default) a
stage named ``contrastive`` takes from its method's own recipe (``MethodSpec.recipe``):

* ``augmentation`` -- the views' augmentation (ProbMCL Sec. 4: RandAugment in both stages);
* ``backbone_lr_scale`` -- 1.0 unless the recipe sets one (ProbMCL: one lr, Adam 1e-4, for the
  whole network).

Everything else (epochs, batch, optimiser, lr, schedule, the classification stage) stays the
suite's. ``shared`` applies the suite's augmentation and backbone_lr_scale to the contrastive stage
too (the reading before issue #20). The result is ``budget.stage_recipe`` (applied by
``bench.run.runner.stage_recipe``), so it is part of the job id and of the record.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from bench.spec import method_facts

CONTRASTIVE_RECIPES = ("method", "shared")
CONTRASTIVE_STAGE = "contrastive"


def contrastive_stage(budget: Mapping[str, Any], protocol: str, method: str,
                      stages: Sequence[str] | None) -> dict[str, Any]:
    """``budget`` with the contrastive stage's own recipe in ``stage_recipe`` (equal budget,
    ``contrastive_recipe: method``). Methods without a contrastive stage keep their budget as it
    was: the key is dropped, so their job ids do not change."""
    out = dict(budget)
    choice = out.pop("contrastive_recipe", "method")
    if protocol != "equal-budget" or not stages or CONTRASTIVE_STAGE not in stages:
        return out
    out["contrastive_recipe"] = choice
    if choice == "shared":
        return out
    recipe = method_facts.recipe(method)
    own: dict[str, Any] = {"optimizer": {"backbone_lr_scale": float(recipe.get("backbone_lr_scale", 1.0))}}
    if recipe.get("augmentation"):
        own["augmentation"] = recipe["augmentation"]
    stage_recipe = {k: dict(v) for k, v in (out.get("stage_recipe") or {}).items()}
    stage_recipe[CONTRASTIVE_STAGE] = {**own, **stage_recipe.get(CONTRASTIVE_STAGE, {})}
    out["stage_recipe"] = stage_recipe
    return out
