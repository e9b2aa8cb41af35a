"""Seed repeats: a model entry with ``repeats: N`` is N trainings of its recipe with different seeds.

The loader expands such an entry into N entries, so that each is a partition with its own lineage through the
unchanged assets: the entry itself (the recipe's seed) and ``<entry>.seed<k>`` for k = 1 .. N-1 (the recipe's seed
+ k). An experiment or a selection naming the entry includes its repeats; the comparison summarizes the group
(``ftassets/evaluation/seed_repeats.py``).
"""

from __future__ import annotations

from pathlib import Path

from ftassets.config.errors import ConfigError
from ftassets.config.schemas import ExperimentsFile, ModelEntry, ModelsFile
from ftassets.training.recipes import METHODS, Recipe

SEED_SUFFIX = ".seed"


def repeat_name(entry: str, index: int) -> str:
    """The model entry that trains ``entry``'s recipe with its seed + ``index`` (``index`` 0 is the entry itself)."""
    return entry if index == 0 else f"{entry}{SEED_SUFFIX}{index}"


def expand_repeats(
    config_dir: Path, models: ModelsFile, recipes: dict[str, Recipe]
) -> tuple[dict[str, ModelEntry], dict[str, tuple[str, ...]]]:
    """Every entry of models.yaml, each followed by its repeats, and the repeat groups: for each entry with
    ``repeats`` above 1, its N entries, itself first."""
    entries: dict[str, ModelEntry] = {}
    groups: dict[str, tuple[str, ...]] = {}
    for name, entry in models.models.items():
        entries[name] = entry
        if entry.repeats == 1:
            continue
        _check_repeatable(config_dir, name, entry, recipes)
        members = tuple(repeat_name(name, index) for index in range(entry.repeats))
        for index, member in enumerate(members[1:], start=1):
            if member in models.models:
                raise ConfigError(
                    f"{config_dir / 'models.yaml'}: models.{name}.repeats: repeat {index} of {name!r} is named "
                    f"{member!r}, and models.yaml has an entry of that name already; rename that entry or lower repeats"
                )
            described = f"seed repeat {index} of {name}" + (f": {entry.description}" if entry.description else "")
            entries[member] = entry.model_copy(update={"repeats": 1, "description": described})
        groups[name] = members
    return entries, groups


def with_repeats(models: list[str], groups: dict[str, tuple[str, ...]]) -> list[str]:
    """``models`` with each entry that has repeats followed by them, each name once."""
    return list(dict.fromkeys(member for model in models for member in groups.get(model, (model,))))


def experiments_with_repeats(experiments: ExperimentsFile, groups: dict[str, tuple[str, ...]]) -> ExperimentsFile:
    """``experiments`` with every experiment's models including their repeats."""
    if not groups:
        return experiments
    expanded = {
        name: experiment.model_copy(update={"models": with_repeats(experiment.models, groups)})
        for name, experiment in experiments.experiments.items()
    }
    return experiments.model_copy(update={"experiments": expanded})


def _check_repeatable(config_dir: Path, name: str, entry: ModelEntry, recipes: dict[str, Recipe]) -> None:
    recipe = recipes[entry.recipe] if entry.recipe else None
    if recipe is None:
        why = "the entry has no recipe: its base is evaluated, the same way each time"
    elif recipe.cloud:
        why = f"recipe {entry.recipe!r} ({recipe.method}) fine-tunes in the cloud, a paid job per repeat"
    else:
        return
    raise ConfigError(
        f"{config_dir / 'models.yaml'}: models.{name}.repeats: {entry.repeats} repeats need a recipe that trains "
        f"locally ({', '.join(METHODS)}), but {why}; remove `repeats` from the entry (base {entry.base!r})"
    )
