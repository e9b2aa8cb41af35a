"""Azure configuration, the Azure OpenAI backend and the fine-tuning lifecycle's pieces, against the loopback
fake Azure (``fakes/azure_openai.py``) with the real ``openai`` and ``azure-mgmt-cognitiveservices`` SDKs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes.azure_openai import FakeAzure
from helpers import REPO, edit_yaml

from ftassets.config import ConfigError, load_project_config
from ftassets.config.schemas import EvaluationSettings

KEY = "azkey-unit-9d2f-secret"


@pytest.fixture
def fake(monkeypatch):
    with FakeAzure(responder=lambda model, messages: "positive", api_key=KEY) as server:
        monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", server.url)
        monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
        yield server


def conversations(count: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"review number {i}: great product"}] for i in range(count)]


# ---- configuration


def test_shipped_pricing_has_the_gpt5_family_with_date_and_deployment_type():
    project = load_project_config(REPO / "configs")
    prices = project.azure.pricing
    assert (prices["gpt-5"].input_per_1m, prices["gpt-5"].cached_input_per_1m, prices["gpt-5"].output_per_1m) == (
        1.25,
        0.125,
        10.0,
    )
    assert (prices["gpt-5-mini"].input_per_1m, prices["gpt-5-mini"].output_per_1m) == (0.25, 2.0)
    assert (prices["gpt-5-nano"].input_per_1m, prices["gpt-5-nano"].output_per_1m) == (0.05, 0.40)
    assert {p.as_of for n, p in prices.items() if n.startswith("gpt-5")} == {"2025-08-07"}
    assert prices["gpt-5-mini"].deployment_type == "GlobalStandard"
    assert {"gpt-5", "gpt-5-mini", "gpt-5-nano"} <= set(project.experiments.experiments["default"].models)
    assert project.bases["gpt-5-mini"].source == "azure_openai"


def test_a_malformed_price_names_file_and_field(config_dir):
    edit_yaml(config_dir / "azure.yaml", lambda d: d["pricing"]["gpt-5-mini"].update(output_per_1m=-1))
    with pytest.raises(ConfigError, match=r"(?s)azure\.yaml.*pricing\.gpt-5-mini\.output_per_1m"):
        load_project_config(config_dir)


def test_a_deployment_without_a_price_is_refused(config_dir):
    edit_yaml(config_dir / "azure.yaml", lambda d: d["pricing"].pop("gpt-5-nano"))
    with pytest.raises(ConfigError, match=r"azure\.yaml: deployments\.gpt-5-nano\.model: no price for 'gpt-5-nano'"):
        load_project_config(config_dir)


def test_a_base_naming_an_unknown_deployment_lists_the_known_ones(config_dir):
    edit_yaml(config_dir / "models.yaml", lambda d: d["bases"]["gpt-5"].update(deployment="gpt-6"))
    with pytest.raises(
        ConfigError, match=r"models\.yaml: bases\.gpt-5\.deployment: unknown deployment 'gpt-6'.*gpt-5-mini"
    ):
        load_project_config(config_dir)


def test_gpt5_fine_tuning_is_refused_naming_the_fine_tunable_models(config_dir):
    edit_yaml(
        config_dir / "models.yaml",
        lambda d: d["models"].update({"gpt-5-mini-sft": {"base": "gpt-5-mini", "recipe": "azure-sft"}}),
    )
    with pytest.raises(ConfigError) as error:
        load_project_config(config_dir)
    message = str(error.value)
    assert "models.gpt-5-mini-sft.base" in message and "no supervised fine-tuning" in message
    assert all(name in message for name in ("gpt-4.1-mini", "gpt-4.1-nano", "gpt-4o-mini"))


def test_local_recipes_on_api_bases_and_cloud_recipes_on_local_bases_are_refused(config_dir):
    edit_yaml(
        config_dir / "models.yaml", lambda d: d["models"].update({"gpt-5-lora": {"base": "gpt-5", "recipe": "lora"}})
    )
    with pytest.raises(ConfigError, match=r"models\.gpt-5-lora\.recipe: recipe 'lora' trains locally"):
        load_project_config(config_dir)
    edit_yaml(
        config_dir / "models.yaml",
        lambda d: (
            d["models"].pop("gpt-5-lora"),
            d["models"].update({"tiny-cloud": {"base": "tiny", "recipe": "azure-sft"}}),
        ),
    )
    with pytest.raises(
        ConfigError, match=r"models\.tiny-cloud\.recipe: .*fine-tunes in the cloud but base 'tiny' is local"
    ):
        load_project_config(config_dir)


def test_key_auth_without_a_key_variable_is_refused(config_dir):
    edit_yaml(config_dir / "azure.yaml", lambda d: d["endpoints"]["default"].pop("api_key_env"))
    with pytest.raises(ConfigError, match=r"(?s)azure\.yaml.*endpoints\.default.*api_key_env is not set"):
        load_project_config(config_dir)


def test_default_run_leaves_out_api_entries_without_credentials_and_says_so(monkeypatch):
    from ftassets.azure.settings import without_missing_credentials

    project = load_project_config(REPO / "configs")
    monkeypatch.delenv("AZURE_OPENAI_ENDPOINT", raising=False)
    monkeypatch.delenv("AZURE_OPENAI_API_KEY", raising=False)
    said: list[str] = []
    models = without_missing_credentials(project, ["tiny-lora", "gpt-5", "gpt-5-mini", "gpt-5-nano"], said.append)
    assert models == ["tiny-lora"]
    assert said == [
        "leaving out gpt-5, gpt-5-mini, gpt-5-nano: $AZURE_OPENAI_ENDPOINT, $AZURE_OPENAI_API_KEY not set "
        "(export them to include these API models)"
    ]
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://example.openai.azure.com")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "k")
    assert without_missing_credentials(project, ["tiny-lora", "gpt-5"], said.append) == ["tiny-lora", "gpt-5"]


def test_missing_credentials_are_named_all_at_once(monkeypatch):
    from ftassets.azure.settings import resolve_base
    from ftassets.endpoints import MissingCredentials

    monkeypatch.delenv("AZURE_OPENAI_ENDPOINT", raising=False)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "k")
    with pytest.raises(
        MissingCredentials,
        match=r"base 'gpt-5' \(models\.yaml bases\.gpt-5\) needs \$AZURE_OPENAI_ENDPOINT, which is not set",
    ):
        resolve_base(load_project_config(REPO / "configs"), "gpt-5")


# ---- the backend


def test_gpt5_requests_follow_the_reasoning_model_rules_and_carry_usage_and_cost(fake):
    from ftassets.backends.factory import backend_for_base

    project = load_project_config(REPO / "configs")
    with backend_for_base(project, "gpt-5-mini", Path("unused"), "cpu", EvaluationSettings()) as backend:
        first = backend.generate(conversations(3), 8)
        again = backend.generate(conversations(1), 8)
    body = json.loads(fake.chat_requests()[0]["body"])
    assert body["max_completion_tokens"] >= 8 and body["reasoning_effort"] == "minimal" and body["verbosity"] == "low"
    assert "temperature" not in body and "max_tokens" not in body
    assert fake.chat_requests()[0]["path"] == "/openai/deployments/gpt-5-mini/chat/completions"
    assert fake.chat_requests()[0]["query"]["api-version"] == "2025-04-01-preview"
    assert fake.chat_requests()[0]["headers"]["api-key"] == KEY
    generation = first[0]
    assert generation.text == "positive" and generation.prompt_tokens > 0 and generation.first_token_s is not None
    assert again[0].cached_tokens == again[0].prompt_tokens, "the same prompt again is served from the prompt cache"
    price = project.azure.pricing["gpt-5-mini"]
    assert generation.cost_usd == pytest.approx(price.cost(generation.prompt_tokens, 0, generation.completion_tokens))
    assert again[0].cost_usd < generation.cost_usd


def test_reasoning_tokens_are_counted_and_billed_as_output(fake, config_dir):
    from ftassets.backends.factory import backend_for_base

    edit_yaml(config_dir / "azure.yaml", lambda d: d["deployments"]["gpt-5"].update(reasoning_effort="high"))
    project = load_project_config(config_dir)
    with backend_for_base(project, "gpt-5", Path("unused"), "cpu", EvaluationSettings()) as backend:
        [generation] = backend.generate(conversations(1), 8)
    assert (
        generation.reasoning_tokens == fake.state.reasoning_tokens
        and generation.completion_tokens == 1 + generation.reasoning_tokens
    )
    assert generation.cost_usd == pytest.approx(
        (generation.prompt_tokens * 1.25 + generation.completion_tokens * 10.0) / 1e6
    )


def test_the_fake_refuses_temperature_and_max_tokens_for_gpt5_as_azure_does(fake):
    from ftassets.backends.openai_compatible import BackendError, OpenAICompatibleBackend

    project = load_project_config(REPO / "configs")
    from ftassets.azure.clients import openai_client
    from ftassets.azure.settings import resolve_base

    naive = OpenAICompatibleBackend(
        openai_client(resolve_base(project, "gpt-5")), "gpt-5", name="naive", reasoning_model=False
    )
    with pytest.raises(BackendError, match="400 - Unsupported parameter: 'temperature' is not supported") as error:
        naive.generate(conversations(1), 8)
    assert KEY not in str(error.value)


def test_429s_are_retried_honouring_retry_after_and_exhaustion_is_an_error(fake, config_dir):
    from ftassets.backends.factory import backend_for_base
    from ftassets.backends.openai_compatible import BackendError

    project = load_project_config(REPO / "configs")
    fake.throttle(3, retry_after_ms=10)
    with backend_for_base(project, "gpt-5-nano", Path("unused"), "cpu", EvaluationSettings()) as backend:
        assert [g.text for g in backend.generate(conversations(1), 8)] == ["positive"]
    assert len(fake.chat_requests()) == 4
    edit_yaml(config_dir / "azure.yaml", lambda d: d["endpoints"]["default"].update(max_retries=1))
    fake.throttle(5, retry_after_ms=10)
    with backend_for_base(
        load_project_config(config_dir), "gpt-5-nano", Path("unused"), "cpu", EvaluationSettings()
    ) as backend:
        with pytest.raises(BackendError, match="429"):
            backend.generate(conversations(1), 8)


def test_concurrency_is_bounded_and_order_kept(config_dir, monkeypatch):
    from ftassets.backends.factory import backend_for_base

    edit_yaml(config_dir / "azure.yaml", lambda d: d["endpoints"]["default"].update(concurrency=3))
    with FakeAzure(
        responder=lambda model, messages: messages[-1]["content"].split(":")[0],
        api_key=KEY,
        chat_delay_s=0.05,
        first_chat_waits_for=2,
    ) as fake:
        monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", fake.url)
        monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
        with backend_for_base(
            load_project_config(config_dir), "gpt-5-nano", Path("unused"), "cpu", EvaluationSettings()
        ) as backend:
            texts = [g.text for g in backend.generate(conversations(12), 8)]
    assert texts == [f"review number {i}" for i in range(12)]
    assert 2 <= fake.state.max_in_flight <= 3


def test_a_slow_endpoint_times_out(config_dir, monkeypatch):
    from ftassets.backends.factory import backend_for_base
    from ftassets.backends.openai_compatible import BackendError

    edit_yaml(config_dir / "azure.yaml", lambda d: d["endpoints"]["default"].update(timeout_s=0.2, max_retries=0))
    with FakeAzure(api_key=KEY, chat_delay_s=1.0) as fake:
        monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", fake.url)
        monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
        with backend_for_base(
            load_project_config(config_dir), "gpt-5-nano", Path("unused"), "cpu", EvaluationSettings()
        ) as backend:
            with pytest.raises(BackendError, match="(?i)timed out"):
                backend.generate(conversations(1), 8)


def test_entra_id_sends_a_bearer_token_and_no_key(fake, config_dir, monkeypatch):
    from ftassets.backends.factory import backend_for_base

    edit_yaml(config_dir / "azure.yaml", lambda d: d["endpoints"]["default"].update(auth="entra_id", api_key_env=None))
    monkeypatch.delenv("AZURE_OPENAI_API_KEY")
    monkeypatch.setenv("AZURE_OPENAI_AD_TOKEN", fake.state.bearer_token)
    with backend_for_base(
        load_project_config(config_dir), "gpt-5", Path("unused"), "cpu", EvaluationSettings()
    ) as backend:
        assert backend.generate(conversations(1), 8)[0].text == "positive"
    headers = fake.chat_requests()[0]["headers"]
    assert headers["authorization"] == f"Bearer {fake.state.bearer_token}" and "api-key" not in headers


def test_the_v1_api_routes_without_api_version(fake, config_dir):
    from ftassets.backends.factory import backend_for_base

    edit_yaml(config_dir / "azure.yaml", lambda d: d["endpoints"]["default"].update(api="v1"))
    with backend_for_base(
        load_project_config(config_dir), "gpt-5-mini", Path("unused"), "cpu", EvaluationSettings()
    ) as backend:
        assert backend.generate(conversations(1), 8)[0].text == "positive"
    request = fake.chat_requests()[0]
    assert request["path"] == "/openai/v1/chat/completions" and "api-version" not in request["query"]
    assert json.loads(request["body"])["model"] == "gpt-5-mini"


def test_an_openai_compatible_base_uses_its_own_url_key_and_price(fake, config_dir, monkeypatch):
    from ftassets.backends.factory import backend_for_base

    edit_yaml(
        config_dir / "models.yaml",
        lambda d: d["bases"].update(
            {
                "served": {
                    "source": "openai_compatible",
                    "base_url_env": "SERVED_BASE_URL",
                    "api_key_env": "SERVED_KEY",
                    "model": "gpt-4.1-mini",
                    "pricing": {
                        "input_per_1m": 1.0,
                        "output_per_1m": 2.0,
                        "as_of": "2026-01-01",
                        "deployment_type": "self-hosted",
                    },
                }
            }
        ),
    )
    monkeypatch.setenv("SERVED_BASE_URL", f"{fake.url}/openai/v1/")
    monkeypatch.setenv("SERVED_KEY", KEY)
    with backend_for_base(
        load_project_config(config_dir), "served", Path("unused"), "cpu", EvaluationSettings()
    ) as backend:
        [generation] = backend.generate(conversations(1), 8)
    body = json.loads(fake.chat_requests()[0]["body"])
    assert body["temperature"] == 0 and body["max_tokens"] == 8
    assert generation.cost_usd == pytest.approx(
        (generation.prompt_tokens * 1.0 + generation.completion_tokens * 2.0) / 1e6
    )


def test_the_resolved_target_never_shows_the_key(fake):
    from ftassets.azure.settings import resolve_base

    target = resolve_base(load_project_config(REPO / "configs"), "gpt-5")
    assert target.secret == KEY and KEY not in repr(target) and KEY not in json.dumps(target.describe())


# ---- fine-tuning jobs and deployments


def _splits(count: int = 12) -> dict[str, list[dict[str, str]]]:
    rows = [{"prompt": f"Review: item {i} was fine", "answer": "positive"} for i in range(count)]
    return {"train": rows, "validation": rows[:4]}


def test_a_job_walks_pending_running_succeeded_with_events_results_and_checkpoints(fake, tmp_path):
    from ftassets.azure.clients import openai_client
    from ftassets.azure.finetuning import export_chat_jsonl, run_fine_tuning
    from ftassets.azure.settings import resolve_base
    from ftassets.training.recipes import parse_recipe

    recipe = parse_recipe(
        {
            "method": "azure_sft",
            "epochs": 3,
            "batch_size": 4,
            "learning_rate_multiplier": 0.5,
            "seed": 7,
            "suffix": "unit",
            "training_type": "developerTier",
        }
    )
    files = export_chat_jsonl(_splits(), "Answer with one word.", tmp_path)
    lines = files["train"].read_text().splitlines()
    assert json.loads(lines[0]) == {
        "messages": [
            {"role": "system", "content": "Answer with one word."},
            {"role": "user", "content": "Review: item 0 was fine"},
            {"role": "assistant", "content": "positive"},
        ]
    }
    logged: list[str] = []
    client = openai_client(resolve_base(load_project_config(REPO / "configs"), "gpt-4.1-mini"))
    outcome = run_fine_tuning(
        client, "gpt-4.1-mini-2025-04-14", recipe, files, poll_interval_s=0.0, timeout_s=60, log=logged.append
    )
    assert outcome.statuses_seen == ["pending", "running", "succeeded"]
    assert outcome.fine_tuned_model.startswith("gpt-4.1-mini-2025-04-14.ft-") and outcome.trained_tokens > 0
    create = json.loads(
        next(r for r in fake.state.requests if r["path"] == "/openai/fine_tuning/jobs" and r["method"] == "POST")[
            "body"
        ]
    )
    assert create["trainingType"] == "developerTier" and create["seed"] == 7 and create["suffix"] == "unit"
    assert create["method"] == {
        "type": "supervised",
        "supervised": {"hyperparameters": {"n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 0.5}},
    }
    assert [r["step"] for r in outcome.results] == list(range(1, 10)) and outcome.train_loss[-1][
        1
    ] < outcome.train_loss[0][1]
    assert outcome.val_loss and [c["step"] for c in outcome.checkpoints] == [8, 9]
    assert any("Training started." in line for line in logged) and any("Step 9/9" in line for line in logged)
    assert len({e["message"] for e in outcome.events}) == len(outcome.events), "each event logged once"


def test_too_few_examples_fail_before_any_upload(tmp_path):
    from ftassets.azure.finetuning import FineTuningError, export_chat_jsonl

    with pytest.raises(FineTuningError, match="at least 10: raise sizes.train"):
        export_chat_jsonl(_splits(5), None, tmp_path)


def test_a_failed_job_raises_azures_reason(fake, tmp_path):
    from ftassets.azure.clients import openai_client
    from ftassets.azure.finetuning import FineTuningError, export_chat_jsonl, run_fine_tuning
    from ftassets.azure.settings import resolve_base
    from ftassets.training.recipes import parse_recipe

    fake.state.fail_jobs = True
    client = openai_client(resolve_base(load_project_config(REPO / "configs"), "gpt-4.1-mini"))
    with pytest.raises(FineTuningError, match="ended failed: Training file has too few examples"):
        run_fine_tuning(
            client,
            "gpt-4.1-mini-2025-04-14",
            parse_recipe({"method": "azure_sft"}),
            export_chat_jsonl(_splits(), None, tmp_path),
            poll_interval_s=0.0,
            timeout_s=60,
            log=lambda line: None,
        )


def test_an_interrupted_run_cancels_its_job(fake, tmp_path):
    from ftassets.azure.clients import openai_client
    from ftassets.azure.finetuning import export_chat_jsonl, run_fine_tuning
    from ftassets.azure.settings import resolve_base
    from ftassets.training.recipes import parse_recipe

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    client = openai_client(resolve_base(load_project_config(REPO / "configs"), "gpt-4.1-mini"))
    with pytest.raises(KeyboardInterrupt):
        run_fine_tuning(
            client,
            "gpt-4.1-mini-2025-04-14",
            parse_recipe({"method": "azure_sft"}),
            export_chat_jsonl(_splits(), None, tmp_path),
            poll_interval_s=0.0,
            timeout_s=60,
            log=lambda line: None,
            sleep=interrupted,
        )
    assert [job["status"] for job in fake.state.jobs.values()] == ["cancelled"]


def test_deployments_are_created_tagged_and_torn_down_through_the_control_plane(fake, config_dir, monkeypatch):
    from ftassets.azure.lifecycle import teardown_deployments
    from ftassets.endpoints import MissingCredentials

    edit_yaml(config_dir / "azure.yaml", lambda d: d.update(management_url=fake.url))
    project = load_project_config(config_dir)
    with pytest.raises(
        MissingCredentials, match=r"\$AZURE_SUBSCRIPTION_ID, \$AZURE_RESOURCE_GROUP, \$AZURE_OPENAI_ACCOUNT"
    ):
        teardown_deployments(project, None, print)
    for name, value in {
        "AZURE_SUBSCRIPTION_ID": "sub",
        "AZURE_RESOURCE_GROUP": "rg",
        "AZURE_OPENAI_ACCOUNT": "acct",
        "AZURE_MANAGEMENT_TOKEN": fake.state.management_token,
    }.items():
        monkeypatch.setenv(name, value)
    from ftassets.azure.clients import account_ref, management_client
    from ftassets.azure.deployments import deploy, managed_deployments

    account = account_ref(project.azure)
    logged: list[str] = []
    with management_client(project.azure, account) as mgmt:
        record = deploy(
            mgmt,
            account,
            "tiny-cls-1234",
            "gpt-4.1-mini",
            sku="DeveloperTier",
            capacity=1,
            hosting_per_hour_usd=0.0,
            tags={"ftassets-model": "x"},
            log=logged.append,
        )
        assert [d.name for d in managed_deployments(mgmt, account)] == ["tiny-cls-1234"]
    put = next(r for r in fake.state.requests if r["method"] == "PUT")
    account_path = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/acct"
    assert put["path"] == f"{account_path}/deployments/tiny-cls-1234"
    assert put["headers"]["authorization"] == f"Bearer {fake.state.management_token}" and put["query"]["api-version"]
    body = json.loads(put["body"])
    assert (
        body["sku"] == {"name": "DeveloperTier", "capacity": 1}
        and body["properties"]["model"]["name"] == "gpt-4.1-mini"
    )
    assert "24 h" in record.expires and fake.state.deployments["tiny-cls-1234"] == "gpt-4.1-mini"
    fake.state.arm_deployments["someone-elses"] = {
        **fake.state.arm_deployments["tiny-cls-1234"],
        "name": "someone-elses",
        "tags": {},
    }
    deleted = teardown_deployments(project, None, logged.append)
    assert [d["name"] for d in deleted] == ["tiny-cls-1234"] and "someone-elses" in fake.state.arm_deployments
    assert any("deleted deployment 'tiny-cls-1234'" in line for line in logged)


def test_a_run_stopped_after_training_follows_the_same_job_instead_of_training_again(
    fake, config_dir, monkeypatch, tmp_path
):
    from azure.core.exceptions import HttpResponseError

    from ftassets.azure.lifecycle import fine_tune_and_deploy

    edit_yaml(
        config_dir / "azure.yaml",
        lambda d: (d.update(management_url=fake.url), d["fine_tuning"].update(poll_interval_s=0.001)),
    )
    for name, value in {
        "AZURE_SUBSCRIPTION_ID": "sub",
        "AZURE_RESOURCE_GROUP": "rg",
        "AZURE_OPENAI_ACCOUNT": "acct",
        "AZURE_MANAGEMENT_TOKEN": fake.state.management_token,
    }.items():
        monkeypatch.setenv(name, value)
    project = load_project_config(config_dir)
    recipe = project.recipes["azure-sft"]
    fake.state.refuse_deployments = True
    (tmp_path / "first").mkdir()
    with pytest.raises(HttpResponseError, match="DeploymentModelNotSupported"):
        fine_tune_and_deploy(
            project,
            "gpt-4.1-mini-sft",
            "classification",
            recipe,
            _splits(),
            tmp_path / "first",
            "fp1",
            print,
            work_dir=tmp_path / "work",
        )
    fake.state.refuse_deployments = False
    (tmp_path / "second").mkdir()
    tuned = fine_tune_and_deploy(
        project,
        "gpt-4.1-mini-sft",
        "classification",
        recipe,
        _splits(),
        tmp_path / "second",
        "fp1",
        print,
        work_dir=tmp_path / "work",
    )
    assert len(fake.state.jobs) == 1 and tuned.outcome.job_id in fake.state.jobs, (
        "the succeeded job was reused, not paid again"
    )
    assert tuned.deployment.name in fake.state.arm_deployments and not (tmp_path / "work" / "cloud_job.json").exists()
    assert tuned.training_cost_usd == pytest.approx(tuned.outcome.trained_tokens * 5.00 / 1e6)
