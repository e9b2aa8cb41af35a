"""Azure partitions end to end through Dagster, against the loopback fake Azure (real SDKs, real HTTP).

One small project (the session's tiny base, a 40-example classification task) serves every test here:
``ftassets run`` with GPT-5 mini next to a local LoRA, the cloud fine-tuning lifecycle of
``gpt-4.1-mini-sft`` (upload, job, events, deploy, evaluate the deployment, teardown), and a scan of
everything those runs wrote for the API key.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes.azure_openai import FakeAzure
from helpers import REPO, copy_project, edit_yaml, split_oracle

pytestmark = pytest.mark.e2e

API_KEY = "azkey-7Q2xV9-do-not-log-4c1e8b"
MANAGEMENT_TOKEN = "armtoken-P3kW8-do-not-log-91f0"


def _oracle(home: Path):
    """Answers from the test split: fine-tuned deployments always right, base GPT-5 models wrong on every 4th."""
    return split_oracle(home, lambda model: ".ft-" in model)


@pytest.fixture(scope="module")
def azure_world(tmp_path_factory, tiny_base_dir):
    root = tmp_path_factory.mktemp("azure_e2e")
    config_dir, home, dagster_home = copy_project(root)
    edit_yaml(
        config_dir / "models.yaml",
        lambda d: d["bases"].update(tiny={"source": "huggingface", "id": str(tiny_base_dir)}),
    )

    def small_training(d):
        d["recipes"]["prefix"].update(max_steps=3, eval_steps=3, save_steps=3, logging_steps=1)
        d["evaluation"].update(bootstrap_resamples=50)

    edit_yaml(config_dir / "experiments.yaml", small_training)
    with FakeAzure(responder=_oracle(home), api_key=API_KEY, management_token=MANAGEMENT_TOKEN) as fake:
        edit_yaml(
            config_dir / "azure.yaml",
            lambda d: (d.update(management_url=fake.url), d["fine_tuning"].update(poll_interval_s=0.01)),
        )
        env = {
            "AZURE_OPENAI_ENDPOINT": fake.url,
            "AZURE_OPENAI_API_KEY": API_KEY,
            "AZURE_SUBSCRIPTION_ID": "sub-0000",
            "AZURE_RESOURCE_GROUP": "rg-ftassets",
            "AZURE_OPENAI_ACCOUNT": "aoai-ftassets",
            "AZURE_MANAGEMENT_TOKEN": MANAGEMENT_TOKEN,
            "DAGSTER_HOME": str(dagster_home),
            "FTASSETS_HOME": str(home),
            "FTASSETS_CONFIG_DIR": str(config_dir),
        }
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            yield dict(root=root, config_dir=config_dir, home=home, dagster_home=dagster_home, fake=fake)


def _ftassets(*argv: str) -> tuple[int, str]:
    """The ``ftassets`` command in a child process (the environment set by the fixture), with what it printed."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "ftassets", *argv], capture_output=True, text=True, timeout=600, cwd=REPO
    )
    return done.returncode, done.stdout + done.stderr


def _runner(world):
    from ftassets.artifacts import ArtifactStore
    from ftassets.config import load_project_config
    from ftassets.definitions import build_definitions
    from ftassets.runner import PipelineRunner

    project = load_project_config(world["config_dir"])
    lines: list[str] = []
    runner = PipelineRunner(
        build_definitions(project.config_dir, world["home"]),
        project,
        ArtifactStore(world["home"]),
        _instance(world),
        log=lines.append,
    )
    return runner, lines


def _instance(world):
    import dagster as dg

    return dg.DagsterInstance.from_config(str(world["dagster_home"]))


def _comparison(world):
    from ftassets.definitions import build_definitions

    defs = build_definitions(world["config_dir"], world["home"])
    return defs.load_asset_value("comparison", partition_key="classification", instance=_instance(world))


def test_ftassets_run_compares_gpt5_mini_with_its_cost_next_to_a_local_fine_tune(azure_world):
    code, printed = _ftassets(
        "run", "--tasks", "classification", "--models", "gpt-5-mini", "tiny-prefix", "--no-forgetting"
    )
    assert code == 0, printed
    table = _comparison(azure_world).set_index(["model", "variant"])
    gpt = table.loc[("gpt-5-mini", "base")]
    assert gpt.status == "ok" and gpt.device == "api" and gpt.n == 20
    assert gpt.accuracy == pytest.approx(0.75) and gpt.parse_failures == 5
    assert gpt.cost_usd > 0 and gpt.cost_per_1k_usd == pytest.approx(gpt.cost_usd / 20 * 1000)
    assert gpt.prompt_tokens > 0 and gpt.completion_tokens > 0 and gpt.ttft_p50_s > 0
    assert table.loc[("tiny-prefix", "base")].status == table.loc[("tiny-prefix", "finetuned")].status == "ok"
    assert table.loc[("tiny-prefix", "finetuned")].device == "cpu"
    assert "gpt-5-mini" in printed and "$ per 1k" in printed, "the summary shows the cost column"
    bodies = [json.loads(r["body"]) for r in azure_world["fake"].chat_requests()]
    assert bodies and all(
        "max_completion_tokens" in b and "temperature" not in b and "max_tokens" not in b for b in bodies
    )
    assert all(r["query"].get("api-version") for r in azure_world["fake"].chat_requests())

    calls = len(azure_world["fake"].chat_requests())
    runner, _ = _runner(azure_world)
    again = runner.run(["classification"], ["gpt-5-mini", "tiny-prefix"], forgetting=False)
    assert not again.ran and not again.failed and len(azure_world["fake"].chat_requests()) == calls, (
        "nothing re-evaluated or re-billed"
    )


def test_cloud_fine_tuning_lifecycle_upload_job_events_deploy_evaluate_teardown(azure_world):
    import dagster as dg

    from ftassets.artifacts import ArtifactStore, read_manifest
    from ftassets.config import load_project_config
    from ftassets.definitions import build_definitions
    from ftassets.defs.partitions import cell_key
    from ftassets.runner import PipelineRunner

    fake, instance = azure_world["fake"], _instance(azure_world)
    project = load_project_config(azure_world["config_dir"])
    defs = build_definitions(project.config_dir, azure_world["home"])
    runner = PipelineRunner(defs, project, ArtifactStore(azure_world["home"]), instance, log=print)
    report = runner.run(["classification"], ["gpt-4.1-mini-sft"], forgetting=False)
    assert not report.failed, [(o.assets, o.error) for o in report.failed]

    adapter = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey("adapter"), asset_partitions=[cell_key("classification", "gpt-4.1-mini-sft")]
        ),
        limit=1,
    ).records[0]
    metadata = adapter.asset_materialization.metadata
    assert metadata["statuses"].value == ["pending", "running", "succeeded"]
    assert metadata["fine_tuned_model"].value.startswith("gpt-4.1-mini-2025-04-14.ft-")
    assert metadata["hosting_per_hour_usd"].value == 1.70 and metadata["training_cost_usd"].value > 0
    job = next(iter(fake.state.jobs.values()))
    assert job["model"] == "gpt-4.1-mini-2025-04-14" and job["seed"] == 0 and job["suffix"] == "ftassets"
    assert job["method"]["type"] == "supervised" and job["hyperparameters"]["n_epochs"] == 2
    uploads = [f for f in fake.state.files.values() if f["purpose"] == "fine-tune"]
    assert sorted(f["filename"] for f in uploads) == ["train.jsonl", "validation.jsonl"]
    first_line = json.loads(fake.state.file_bytes[job["training_file"]].decode().splitlines()[0])
    assert [m["role"] for m in first_line["messages"]][-2:] == ["user", "assistant"]

    directory = ArtifactStore(azure_world["home"]).path("adapter", "gpt-4.1-mini-sft", "classification")
    manifest = read_manifest(directory)
    assert {"train.jsonl", "validation.jsonl", "results.csv", "events.json", "job.json", "deployment.json"} <= set(
        manifest["files"]
    )
    events = json.loads((directory / "events.json").read_text())
    assert events[0]["message"].startswith("Job enqueued") and events[-1]["message"] == "Training job succeeded."
    logs = [e.message for e in instance.all_logs(adapter.run_id) if e.message]
    assert any("Training started." in line for line in logs) and any(
        "deployment" in line and "ready" in line for line in logs
    )
    for name in ("tokenized_splits", "merged_model"):
        record = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey(name), asset_partitions=[cell_key("classification", "gpt-4.1-mini-sft")]
            ),
            limit=1,
        ).records[0]
        assert record.asset_materialization.metadata["applicable"].value is False

    deployment = manifest["deployment"]["name"]
    assert fake.state.arm_deployments[deployment]["tags"]["managed-by"] == "ftassets"
    routed = [r for r in fake.chat_requests() if f"/deployments/{deployment}/" in r["path"]]
    assert len(routed) == 20, "the fine-tuned row was evaluated through its own deployment"
    table = _comparison(azure_world).set_index(["model", "variant"])
    tuned = table.loc[("gpt-4.1-mini-sft", "finetuned")]
    assert tuned.status == "ok" and tuned.accuracy == 1.0 and tuned.cost_per_1k_usd > 0
    fine_tuned_price = (
        (tuned.prompt_tokens - tuned.cached_tokens) * 0.80 + tuned.cached_tokens * 0.20 + tuned.completion_tokens * 3.20
    )
    assert tuned.cost_usd == pytest.approx(fine_tuned_price / 1e6), "billed at the fine-tuned deployment's price"
    assert table.loc[("gpt-4.1-mini-sft", "base")].accuracy == pytest.approx(0.75)

    from mlflow import MlflowClient

    from ftassets.tracking import default_tracking_uri

    run = MlflowClient(default_tracking_uri(azure_world["home"])).get_run(manifest["mlflow_run_id"])
    assert (
        run.data.metrics["trained_tokens"] > 0 and "train/loss" in run.data.metrics and "eval/loss" in run.data.metrics
    )
    history = MlflowClient(default_tracking_uri(azure_world["home"])).get_metric_history(run.info.run_id, "train/loss")
    assert len(history) >= 2 and history[-1].value < history[0].value

    result = defs.resolve_job_def("azure_teardown").execute_in_process(instance=instance, raise_on_error=False)
    assert result.success
    assert result.output_for_node("teardown_azure_deployments")[0]["name"] == deployment
    assert deployment not in fake.state.arm_deployments and deployment not in fake.state.deployments


def test_without_azure_variables_an_azure_partition_fails_naming_them(azure_world, monkeypatch):
    for name in ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY"):
        monkeypatch.delenv(name)
    runner, lines = _runner(azure_world)
    report = runner.run(["classification"], ["gpt-5-nano"], forgetting=False)
    [failed] = [o for o in report.outcomes if o.status == "failed"]
    assert failed.assets == ("base_model",) and failed.partition == "gpt-5-nano"
    assert "needs $AZURE_OPENAI_ENDPOINT, $AZURE_OPENAI_API_KEY, which are not set" in failed.error
    assert any("FAILED   base_model [gpt-5-nano]" in line for line in lines)
    assert not any(r["path"].startswith("/openai/deployments/gpt-5-nano") for r in azure_world["fake"].state.requests)


def test_the_api_key_appears_in_no_log_metadata_artifact_or_mlflow_record(azure_world):
    """A full Azure partition, then every file written under the project (manifests, predictions, tables,
    the Dagster event log and compute logs, the MLflow store and artifacts, including whatever the other
    tests of this module ran on this worker), every Dagster event and every printed line."""
    import dagster as dg

    runner, lines = _runner(azure_world)
    assert not runner.run(["classification"], ["gpt-5-nano"], forgetting=False).failed
    printed = "\n".join(lines)
    secrets = [API_KEY.encode(), MANAGEMENT_TOKEN.encode()]
    scanned, leaks = 0, []
    for folder in (azure_world["home"], azure_world["dagster_home"], azure_world["root"] / "configs"):
        for path in folder.rglob("*"):
            if path.is_file():
                scanned += 1
                content = path.read_bytes()
                leaks += [str(path) for secret in secrets if secret in content]
    instance = _instance(azure_world)
    events = [event for run in instance.get_runs() for event in instance.all_logs(run.run_id)]
    rendered = "".join(repr(event) for event in events) + printed
    assert any(
        e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION for e in events
    )
    assert scanned > 20
    assert not leaks and API_KEY not in rendered and MANAGEMENT_TOKEN not in rendered, leaks
