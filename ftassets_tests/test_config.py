import pytest
import yaml
from helpers import REPO, edit_yaml

from ftassets.config import ConfigError, load_project_config

REPO_CONFIGS = REPO / "configs"


def test_shipped_configs_load_with_type_defaults():
    project = load_project_config(REPO_CONFIGS)
    assert {"classification", "qa", "sql", "summarization", "instruction"} <= set(project.tasks)
    assert project.tasks["classification"].primary_metric == "accuracy"
    assert "{" in project.tasks["qa"].prompt_template
    assert project.models["tiny-lora"].base == project.models["tiny-full"].base == "tiny"
    assert project.recipe_of("tiny-lora").method == "lora"
    tasks, models = project.default_selection()
    assert "classification" in tasks and "tiny-lora" in models


def test_unknown_field_names_file_field_and_allowed(config_dir):
    edit_yaml(config_dir / "experiments.yaml", lambda d: d["recipes"]["lora"].update(learning_rat=0.1))
    with pytest.raises(ConfigError) as error:
        load_project_config(config_dir)
    message = str(error.value)
    assert "experiments.yaml" in message
    assert "recipes.lora.lora.learning_rat" in message or "recipes.lora.learning_rat" in message
    assert "learning_rate" in message  # the allowed fields are listed


def test_unknown_field_in_tasks_lists_allowed_fields(config_dir):
    edit_yaml(config_dir / "tasks.yaml", lambda d: d["tasks"]["qa"].update(sizez=1))
    with pytest.raises(
        ConfigError, match=r"(?s)tasks\.yaml.*tasks\.qa\.sizez: unknown field 'sizez'; allowed fields: .*sizes"
    ):
        load_project_config(config_dir)


def test_wrong_type_names_field_and_value(config_dir):
    edit_yaml(config_dir / "tasks.yaml", lambda d: d["tasks"]["classification"]["sizes"].update(train="many"))
    with pytest.raises(ConfigError, match=r"(?s)tasks\.yaml.*tasks\.classification\.sizes\.train.*'many'"):
        load_project_config(config_dir)


def test_non_positive_learning_rate_is_rejected(config_dir):
    edit_yaml(config_dir / "experiments.yaml", lambda d: d["recipes"]["lora"].update(learning_rate=0))
    with pytest.raises(ConfigError, match=r"(?s)recipes\.lora\.lora\.learning_rate|recipes\.lora\.learning_rate"):
        load_project_config(config_dir)


def test_unknown_method_lists_methods(config_dir):
    edit_yaml(config_dir / "experiments.yaml", lambda d: d["recipes"]["lora"].update(method="lorra"))
    with pytest.raises(
        ConfigError,
        match=r"(?s)experiments\.yaml.*recipes\.lora.*'lora'.*'full'|experiments\.yaml.*recipes\.lora.*lorra",
    ):
        load_project_config(config_dir)


def test_experiment_naming_unknown_task(config_dir):
    edit_yaml(config_dir / "experiments.yaml", lambda d: d["experiments"]["default"]["tasks"].append("translation"))
    with pytest.raises(ConfigError) as error:
        load_project_config(config_dir)
    message = str(error.value)
    index = len(yaml.safe_load((config_dir / "experiments.yaml").read_text())["experiments"]["default"]["tasks"]) - 1
    assert "experiments.yaml" in message and f"experiments.default.tasks[{index}]" in message
    assert "'translation'" in message and "classification" in message


def test_model_naming_unknown_recipe_and_base(config_dir):
    edit_yaml(config_dir / "models.yaml", lambda d: d["models"]["tiny-lora"].update(recipe="nope"))
    with pytest.raises(
        ConfigError,
        match=r"(?s)models\.yaml: models\.tiny-lora\.recipe: unknown recipe 'nope'; "
        r"defined recipes: azure-sft, dora, dpo, foundry-sft, full, ia3, lora, prefix, ptuning, qlora",
    ):
        load_project_config(config_dir)


def test_unknown_task_type(config_dir):
    edit_yaml(config_dir / "tasks.yaml", lambda d: d["tasks"]["qa"].update(type="poetry"))
    with pytest.raises(
        ConfigError, match=r"(?s)tasks\.qa\.type: unknown task type 'poetry'; known types: .*classification"
    ):
        load_project_config(config_dir)


def test_prompt_template_with_unknown_placeholder(config_dir):
    edit_yaml(config_dir / "tasks.yaml", lambda d: d["tasks"]["qa"].update(prompt_template="Answer {nonsense}"))
    with pytest.raises(ConfigError, match=r"(?s)tasks\.qa\.prompt_template: unknown placeholder\(s\) \['nonsense'\]"):
        load_project_config(config_dir)


def test_primary_metric_must_belong_to_the_task_type(config_dir):
    edit_yaml(config_dir / "tasks.yaml", lambda d: d["tasks"]["classification"].update(primary_metric="rougeL"))
    with pytest.raises(ConfigError, match=r"(?s)tasks\.classification\.primary_metric: 'rougeL'.*accuracy"):
        load_project_config(config_dir)


def test_model_names_must_be_slugs(config_dir):
    edit_yaml(
        config_dir / "models.yaml", lambda d: d["models"].update({"Org/Model": {"base": "tiny", "recipe": "lora"}})
    )
    with pytest.raises(ConfigError, match=r"(?s)models\.yaml.*Org/Model"):
        load_project_config(config_dir)


def test_azure_holds_env_var_names_not_secrets(config_dir):
    edit_yaml(config_dir / "azure.yaml", lambda d: d["endpoints"]["default"].update(api_key_env="sk-12345-secret"))
    with pytest.raises(ConfigError, match=r"(?s)azure\.yaml.*endpoints\.default\.api_key_env"):
        load_project_config(config_dir)


def test_malformed_yaml_names_the_file(config_dir):
    (config_dir / "models.yaml").write_text("bases: [unclosed\n")
    with pytest.raises(ConfigError, match=r"(?s)models\.yaml: not valid YAML"):
        load_project_config(config_dir)


def test_adding_a_task_or_model_is_a_yaml_edit(config_dir):
    edit_yaml(
        config_dir / "tasks.yaml",
        lambda d: d["tasks"].update(
            reviews={"type": "classification", "sizes": {"train": 50, "validation": 10, "test": 10}}
        ),
    )
    edit_yaml(
        config_dir / "models.yaml", lambda d: d["models"].update({"tiny-lora-r4": {"base": "tiny", "recipe": "lora"}})
    )
    project = load_project_config(config_dir)
    assert "reviews" in project.tasks and "tiny-lora-r4" in project.models


def test_a_key_given_twice_is_an_error_naming_both_lines(config_dir):
    text = (config_dir / "models.yaml").read_text()
    entry = "  tiny-lora:\n    base: tiny\n    recipe: full\n"
    (config_dir / "models.yaml").write_text(text.replace("models:\n", "models:\n" + entry, 1))
    first = 1 + (config_dir / "models.yaml").read_text().splitlines().index("  tiny-lora:")
    with pytest.raises(ConfigError) as error:
        load_project_config(config_dir)
    message = str(error.value)
    assert "models.yaml" in message and "'tiny-lora' is given twice" in message and f"lines {first} and" in message
