"""A ``foundry_sft`` model entry end to end against the loopback Azure ML workspace (``fakes/azureml.py``) and Azurite,
through the real azure-ai-ml and openai SDKs: chat JSONL export, ``create_finetuning_job`` submitted and followed,
a serverless endpoint for the registered fine-tuned model, its keys, evaluation through its chat-completions
route at the fine-tuned price, the hosting cost, and ``azure_teardown`` deleting the endpoint."""

import json
from pathlib import Path

import pytest
from fakes.azureml import AZURITE, FakeAzureML, azurite, route_datastores_to_azurite
from helpers import REPO, copy_project, edit_yaml, split_oracle

pytestmark = pytest.mark.e2e
ARM_TOKEN = "armtoken-foundry-do-not-log-77ab"
ENTRY = "phi-4-mini-foundry-sft"


def _oracle(home: Path):
    """Answers from the test split: the fine-tuned endpoint always right, the catalog base wrong on every 4th."""
    return split_oracle(home, lambda model: "/workspaces/" in model)


@pytest.fixture(scope="module")
def foundry_world(tmp_path_factory):
    if not AZURITE.exists():
        pytest.skip(f"{AZURITE} missing: run `bash scripts/install_test_tools.sh` (the README's test command does)")
    root = tmp_path_factory.mktemp("foundry")
    config_dir, home, dagster_home = copy_project(root)
    edit_yaml(config_dir / "experiments.yaml", lambda d: d["evaluation"].update(bootstrap_resamples=50))
    with azurite(root / "azurite") as account, route_datastores_to_azurite(account):
        with FakeAzureML(account, token=ARM_TOKEN, responder=_oracle(home), workspace_dir=root / "compute") as fake:
            base_url, base_key = fake.add_catalog_endpoint(
                "phi-4-mini-catalog", "azureml://registries/azureml/models/Phi-4-mini-instruct"
            )
            edit_yaml(
                config_dir / "azure.yaml",
                lambda d: (d.update(management_url=fake.url), d["fine_tuning"].update(poll_interval_s=0.01)),
            )
            env = {
                "AZURE_SUBSCRIPTION_ID": "sub-0000",
                "AZURE_RESOURCE_GROUP": "rg-ftassets",
                "AZUREML_WORKSPACE": "ws-ftassets",
                "AZURE_MANAGEMENT_TOKEN": ARM_TOKEN,
                "AZURE_AI_PHI4_MINI_ENDPOINT": base_url,
                "AZURE_AI_PHI4_MINI_KEY": base_key,
                "DAGSTER_HOME": str(dagster_home),
                "FTASSETS_HOME": str(home),
                "FTASSETS_CONFIG_DIR": str(config_dir),
            }
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv(
                    "AZUREML_CURRENT_CLOUD", "AzureCloud"
                )  # MLClient records its cloud here; undone afterwards
                for name in ("AZURE_OPENAI_ACCOUNT", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY"):
                    patch.delenv(name, raising=False)
                for name, value in env.items():
                    patch.setenv(name, value)
                yield dict(
                    root=root, config_dir=config_dir, home=home, dagster_home=dagster_home, fake=fake, base_key=base_key
                )


def test_a_foundry_fine_tune_is_trained_served_evaluated_and_torn_down(foundry_world):
    import dagster as dg

    from ftassets.artifacts import ArtifactStore, read_manifest
    from ftassets.config import load_project_config
    from ftassets.definitions import build_definitions
    from ftassets.defs.partitions import cell_key
    from ftassets.runner import PipelineRunner

    fake = foundry_world["fake"]
    instance = dg.DagsterInstance.from_config(str(foundry_world["dagster_home"]))
    project = load_project_config(foundry_world["config_dir"])
    defs = build_definitions(project.config_dir, foundry_world["home"])
    lines: list[str] = []
    report = PipelineRunner(defs, project, ArtifactStore(foundry_world["home"]), instance, log=lines.append).run(
        ["classification"], [ENTRY], forgetting=False
    )
    assert not report.failed, [(o.assets, o.error) for o in report.failed]

    [job_name] = fake.state.jobs
    details = fake.state.job_bodies[job_name]["properties"]["fineTuningDetails"]
    assert details["model"]["uri"] == "azureml://registries/azureml/models/Phi-4-mini-instruct/labels/latest"
    assert details["taskType"] == "chatCompletion" and details["hyperParameters"]["num_train_epochs"] == "1"
    assert fake.state.statuses[job_name] == ["Queued", "Running", "Completed"]
    container, path = fake.locate(details["trainingData"]["uri"])
    first = json.loads(fake.container_client(container).download_blob(path).readall().decode().splitlines()[0])
    assert [m["role"] for m in first["messages"]][-2:] == ["user", "assistant"], (
        "the chat JSONL was uploaded to blob storage"
    )

    adapter = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("adapter"), asset_partitions=[cell_key("classification", ENTRY)]),
        limit=1,
    ).records[0]
    metadata = adapter.asset_materialization.metadata
    assert (
        metadata["statuses"].value == ["Queued", "Running", "Completed"]
        and metadata["hosting_per_hour_usd"].value == 0.80
    )
    directory = ArtifactStore(foundry_world["home"]).path("adapter", ENTRY, "classification")
    manifest = read_manifest(directory)
    endpoint = manifest["deployment"]["name"]
    assert manifest["deployment"]["kind"] == "serverless" and manifest["deployment"]["endpoint"].endswith(
        f"/serverless/{endpoint}"
    )
    created = fake.state.serverless[endpoint]
    assert (
        created["tags"]["managed-by"] == "ftassets"
        and "/models/ftassets-phi-4-mini/versions/1" in created["properties"]["modelSettings"]["modelId"]
    )

    key = fake.state.serverless_keys[endpoint]["primaryKey"]
    routed = [r for r in fake.chat_requests() if r["path"] == f"/serverless/{endpoint}/chat/completions"]
    assert len(routed) == 20 and all(r["headers"]["authorization"] == f"Bearer {key}" for r in routed)
    table = defs.load_asset_value("comparison", partition_key="classification", instance=instance).set_index(
        ["model", "variant"]
    )
    tuned, base = table.loc[(ENTRY, "finetuned")], table.loc[(ENTRY, "base")]
    assert tuned.status == "ok" and tuned.accuracy == 1.0 and base.accuracy == pytest.approx(0.75)
    assert tuned.cost_usd == pytest.approx((tuned.prompt_tokens * 0.075 + tuned.completion_tokens * 0.30) / 1e6)

    result = defs.resolve_job_def("azure_teardown").execute_in_process(instance=instance, raise_on_error=False)
    assert result.success
    [deleted] = result.output_for_node("teardown_azure_deployments")
    assert deleted["name"] == endpoint and deleted["hosting_usd"] is not None and deleted["hosting_usd"] >= 0
    assert endpoint not in fake.state.serverless and "phi-4-mini-catalog" in fake.state.serverless, (
        "only ftassets' endpoints"
    )

    secrets = [key.encode(), foundry_world["base_key"].encode(), ARM_TOKEN.encode()]
    leaks = [
        str(p)
        for folder in (foundry_world["home"], foundry_world["dagster_home"])
        for p in folder.rglob("*")
        if p.is_file() and any(secret in p.read_bytes() for secret in secrets)
    ]
    events = "".join(repr(e) for run in instance.get_runs() for e in instance.all_logs(run.run_id)) + "\n".join(lines)
    assert not leaks and not [s for s in secrets if s.decode() in events], leaks


def test_without_workspace_variables_a_foundry_entry_fails_naming_them(foundry_world, monkeypatch):
    from ftassets.azure.foundry import workspace_client
    from ftassets.config import load_project_config
    from ftassets.endpoints import MissingCredentials

    monkeypatch.delenv("AZUREML_WORKSPACE")
    with pytest.raises(MissingCredentials, match=r"Azure AI Foundry.*\$AZUREML_WORKSPACE"):
        workspace_client(load_project_config(foundry_world["config_dir"]).azure)


def test_a_default_run_leaves_the_foundry_entry_out_while_its_variables_are_unset(monkeypatch):
    from ftassets.azure.settings import without_missing_credentials
    from ftassets.config import load_project_config

    for name in ("AZURE_AI_PHI4_MINI_ENDPOINT", "AZURE_AI_PHI4_MINI_KEY"):
        monkeypatch.delenv(name, raising=False)
    lines: list[str] = []
    assert without_missing_credentials(load_project_config(REPO / "configs"), [ENTRY, "tiny-lora"], lines.append) == [
        "tiny-lora"
    ]
    assert lines == [
        f"leaving out {ENTRY}: $AZURE_AI_PHI4_MINI_ENDPOINT, $AZURE_AI_PHI4_MINI_KEY not set "
        "(export them to include these API models)"
    ]
