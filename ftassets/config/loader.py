"""Load and cross-check ``configs/*.yaml``; every error names the file, the field and what is allowed."""

from __future__ import annotations

import os
import string
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ftassets.config.api_entries import check_api_entries
from ftassets.config.errors import ConfigError
from ftassets.config.repeats import expand_repeats, experiments_with_repeats, with_repeats
from ftassets.config.schemas import (
    SCHEMAS,
    AzureFile,
    BaseConfig,
    ExperimentsFile,
    ModelEntry,
    ModelsFile,
    TaskConfig,
    TasksFile,
)
from ftassets.training.recipes import Recipe


@dataclass(frozen=True)
class ResolvedTask:
    """A task from tasks.yaml with the task type's defaults filled in."""

    name: str
    config: TaskConfig
    prompt_template: str
    primary_metric: str
    max_new_tokens: int

    @property
    def type(self) -> str:
        return self.config.type


@dataclass(frozen=True)
class ProjectConfig:
    config_dir: Path
    tasks: dict[str, ResolvedTask]
    bases: dict[str, BaseConfig]
    models: dict[str, ModelEntry]
    recipes: dict[str, Recipe]
    experiments: ExperimentsFile
    azure: AzureFile
    repeat_groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Each model entry with ``repeats`` above 1: its entries, itself first (``ftassets/config/repeats.py``)."""

    def base_of(self, model: str) -> str:
        return self.models[model].base

    def recipe_of(self, model: str) -> Recipe | None:
        """The entry's recipe; a seed repeat's with its seed raised by its index in the repeat group."""
        name = self.models[model].recipe
        if not name:
            return None
        recipe = self.recipes[name]
        if not self.repeat_index(model):  # also every recipe without a seed (cloud jobs): repeats need a local one
            return recipe
        return recipe.model_copy(update={"seed": self.training_seed(model, recipe.seed)})

    def training_seed(self, model: str, seed: int) -> int:
        """The seed ``model`` trains with when its recipe (or a run) says ``seed``: raised by the entry's index in
        its repeat group, so seed repeats differ and the first one keeps the recipe's seed."""
        return seed + self.repeat_index(model)

    def repeat_of(self, model: str) -> str | None:
        """The entry whose seed repeats ``model`` is one of (``model`` itself for the first), None outside a group."""
        return next((entry for entry, members in self.repeat_groups.items() if model in members), None)

    def repeat_index(self, model: str) -> int:
        """How far ``model``'s training seed is from its recipe's: 0 for an entry that is no seed repeat."""
        entry = self.repeat_of(model)
        return self.repeat_groups[entry].index(model) if entry else 0

    def with_repeats(self, models: list[str]) -> list[str]:
        """``models`` with each entry's seed repeats after it."""
        return with_repeats(models, self.repeat_groups)

    def default_selection(self) -> tuple[list[str], list[str]]:
        experiment = self.experiments.experiments[self.experiments.default_experiment]
        return list(experiment.tasks), list(experiment.models)

    def check_selection(self, tasks: list[str], models: list[str]) -> None:
        """A ``ConfigError`` naming the flag, the unknown names and what the configuration defines."""
        for flag, chosen, known in (("--tasks", tasks, self.tasks), ("--models", models, self.models)):
            if unknown := [name for name in chosen if name not in known]:
                raise ConfigError(f"{flag}: unknown {unknown}; defined in {self.config_dir}: {', '.join(known)}")


def default_config_dir() -> Path:
    """``$FTASSETS_CONFIG_DIR``, else ``./configs``, else the repository's own ``configs/``."""
    if "FTASSETS_CONFIG_DIR" in os.environ:
        return Path(os.environ["FTASSETS_CONFIG_DIR"]).resolve()
    local = Path.cwd() / "configs"
    return local.resolve() if local.is_dir() else Path(__file__).resolve().parents[2] / "configs"


def load_project_config(config_dir: Path | str | None = None) -> ProjectConfig:
    config_dir = Path(config_dir) if config_dir else default_config_dir()
    if not config_dir.is_dir():
        raise ConfigError(
            f"{config_dir}: configuration folder not found; run from the repository root or set FTASSETS_CONFIG_DIR"
        )
    files = {name: _parse_file(config_dir / name, schema) for name, schema in SCHEMAS.items()}
    tasks_file: TasksFile = files["tasks.yaml"]
    models_file: ModelsFile = files["models.yaml"]
    experiments_file: ExperimentsFile = files["experiments.yaml"]
    tasks = {name: _resolve_task(config_dir / "tasks.yaml", name, task) for name, task in tasks_file.tasks.items()}
    _check_references(config_dir, tasks, models_file, experiments_file, files["azure.yaml"])
    models, repeat_groups = expand_repeats(config_dir, models_file, experiments_file.recipes)
    return ProjectConfig(
        config_dir=config_dir,
        tasks=tasks,
        bases=dict(models_file.bases),
        models=models,
        recipes=dict(experiments_file.recipes),
        experiments=experiments_with_repeats(experiments_file, repeat_groups),
        azure=files["azure.yaml"],
        repeat_groups=repeat_groups,
    )


class DuplicateKey(ValueError):
    pass


class StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error naming both lines (plain YAML
    keeps the last one silently: a second ``tiny-lora:`` entry would replace the first without a word)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise DuplicateKey(
                    f"key {key!r} is given twice in one mapping, at lines {seen[key]} and {line}; "
                    "keep one of them (YAML would silently keep only the last)"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _parse_file(path: Path, schema: type[BaseModel]) -> Any:
    if not path.exists():
        if schema is AzureFile:
            return AzureFile()
        raise ConfigError(f"{path}: file not found; every project needs {path.name} in its configs folder")
    try:
        raw = yaml.load(path.read_text(), Loader=StrictLoader) or {}
    except DuplicateKey as error:
        raise ConfigError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(raw).__name__}")
    try:
        return schema.model_validate(raw)
    except ValidationError as error:
        lines = [_describe(schema, item) for item in error.errors()]
        raise ConfigError(f"{path}: {len(lines)} problem(s)\n  " + "\n  ".join(lines)) from None


def _describe(schema: type[BaseModel], item: dict) -> str:
    loc = [str(part) for part in item["loc"]]
    field = ".".join(loc) or "(top level)"
    if item["type"] == "extra_forbidden":
        allowed = _allowed_fields(schema, item["loc"][:-1])
        hint = f"; allowed fields: {', '.join(allowed)}" if allowed else ""
        return f"{field}: unknown field {loc[-1]!r}{hint}"
    if item["type"] == "missing":
        return f"{field}: required field is missing"
    return f"{field}: {item['msg']} (got {item.get('input')!r})"


def _allowed_fields(schema: type[BaseModel], loc: tuple) -> list[str]:
    """Walk the schema along an error location to list the fields allowed at that point."""
    node: Any = schema
    for part in loc:
        node = _unwrap(node, part)
        if node is None:
            return []
    return sorted(node.model_fields) if isinstance(node, type) and issubclass(node, BaseModel) else []


def _unwrap(node: Any, part: Any) -> Any:
    if isinstance(node, type) and issubclass(node, BaseModel):
        field = node.model_fields.get(str(part))
        return field.annotation if field else None
    origin = typing.get_origin(node)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(node)[0], part)
    if origin is dict:
        return typing.get_args(node)[1]
    if origin is list:
        return typing.get_args(node)[0]
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(node):
            tag = getattr(option, "model_fields", {}).get("method") or getattr(option, "model_fields", {}).get("source")
            if tag is not None and part in typing.get_args(tag.annotation):
                return option
    return None


def _resolve_task(path: Path, name: str, task: TaskConfig) -> ResolvedTask:
    from ftassets.tasks import TASK_TYPES

    where = f"{path}: tasks.{name}"
    if task.type not in TASK_TYPES:
        raise ConfigError(
            f"{where}.type: unknown task type {task.type!r}; known types: {', '.join(sorted(TASK_TYPES))}"
        )
    try:
        task_type = TASK_TYPES[task.type].bind(task.params, synthetic=task.source is None)
    except ValueError as error:
        raise ConfigError(f"{where}.params: {error}") from None
    primary = task.primary_metric or task_type.default_primary_metric
    if primary not in task_type.metric_names or primary in task_type.count_metrics:
        what = "a count (lower is better), not a score" if primary in task_type.metric_names else "not a metric"
        raise ConfigError(
            f"{where}.primary_metric: {primary!r} is {what} of task type {task.type!r}; "
            f"choose one of: {', '.join(m for m in task_type.metric_names if m not in task_type.count_metrics)}"
        )
    template = task.prompt_template or task_type.default_prompt_template
    used = {field for _, field, _, _ in string.Formatter().parse(template) if field}
    if unknown := used - set(task_type.placeholders):
        raise ConfigError(
            f"{where}.prompt_template: unknown placeholder(s) {sorted(unknown)}; "
            f"task type {task.type!r} provides: {', '.join('{' + f + '}' for f in task_type.placeholders)}"
        )
    return ResolvedTask(
        name=name,
        config=task,
        prompt_template=template,
        primary_metric=primary,
        max_new_tokens=task.max_new_tokens or task_type.default_max_new_tokens,
    )


def _check_references(
    config_dir: Path,
    tasks: dict[str, ResolvedTask],
    models: ModelsFile,
    experiments: ExperimentsFile,
    azure: AzureFile,
) -> None:
    def require(file: str, field: str, value: str, known: typing.Iterable[str], what: str) -> None:
        known = sorted(known)
        if value not in known:
            raise ConfigError(
                f"{config_dir / file}: {field}: unknown {what} {value!r}; defined {what}s: {', '.join(known) or 'none'}"
            )

    for name, entry in models.models.items():
        require("models.yaml", f"models.{name}.base", entry.base, models.bases, "base")
        if entry.recipe is not None:
            require("models.yaml", f"models.{name}.recipe", entry.recipe, experiments.recipes, "recipe")
    require(
        "experiments.yaml", "default_experiment", experiments.default_experiment, experiments.experiments, "experiment"
    )
    for name, experiment in experiments.experiments.items():
        for index, task in enumerate(experiment.tasks):
            require("experiments.yaml", f"experiments.{name}.tasks[{index}]", task, tasks, "task")
        for index, model in enumerate(experiment.models):
            require("experiments.yaml", f"experiments.{name}.models[{index}]", model, models.models, "model")
    for name, deployment in azure.deployments.items():
        require("azure.yaml", f"deployments.{name}.endpoint", deployment.endpoint, azure.endpoints, "endpoint")
    check_api_entries(config_dir, models, experiments.recipes, azure)
