"""The trainer resource's launchers (in process, a Pipes child process, accelerate with two gloo processes)
and MLflow tracking, on the tiny base."""

import dagster as dg
import pytest
from helpers import quick_lora_recipe

from ftassets.defs.resources import TrainerResource
from ftassets.tracking import MlflowTracker, default_tracking_uri


@pytest.fixture(scope="module")
def tracker(tmp_path_factory):
    home = tmp_path_factory.mktemp("mlflow_home")
    return MlflowTracker(default_tracking_uri(home), "ftassets-tests", home / "mlflow" / "artifacts")


RECIPE = quick_lora_recipe()


def materialize_training(trainer: TrainerResource, base_dir, color_splits_dir, work, tracked=None):
    outcome = {}

    @dg.asset
    def trained(context: dg.AssetExecutionContext, trainer: TrainerResource):
        outcome["result"] = trainer.train(
            context, base_dir, color_splits_dir, RECIPE, work / "out", work / "checkpoints", tracked
        )
        return dg.MaterializeResult(metadata={"steps": outcome["result"].steps})

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([trained], resources={"trainer": trainer}, instance=instance)
    assert result.success
    logs = [entry.user_message for entry in instance.all_logs(result.run_id)]
    return outcome["result"], logs


@pytest.mark.parametrize("launcher", ["in_process", "subprocess"])
def test_launchers_train_and_stream_logs_into_the_run(launcher, tiny_base_dir, color_splits_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    result, logs = materialize_training(
        TrainerResource(device="cpu", launcher=launcher), tiny_base_dir, color_splits_dir, tmp_path
    )
    assert result.steps == 6 and result.world_size == 1 and (tmp_path / "out" / "adapter_config.json").exists()
    assert any("step 6/6" in line for line in logs), logs[-10:]
    if launcher == "subprocess":
        assert any("training in a child process" in line for line in logs)


def test_accelerate_runs_two_gloo_processes(tiny_base_dir, color_splits_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    trainer = TrainerResource(device="cpu", launcher="accelerate", num_processes=2)
    result, logs = materialize_training(trainer, tiny_base_dir, color_splits_dir, tmp_path)
    assert result.world_size == 2 and result.steps == 6
    single, _ = materialize_training(
        TrainerResource(device="cpu"), tiny_base_dir, color_splits_dir, tmp_path / "single"
    )
    assert result.tokens_seen > single.tokens_seen, "two processes each consume a batch per step"
    assert (tmp_path / "out" / "adapter_model.safetensors").exists()


def test_bad_launcher_settings_name_the_field(tiny_base_dir, color_splits_dir, tmp_path):
    with pytest.raises(
        ValueError, match="trainer.launcher: unknown 'slurm'; use one of in_process, subprocess, accelerate"
    ):
        materialize_training(TrainerResource(launcher="slurm"), tiny_base_dir, color_splits_dir, tmp_path)


def test_mlflow_run_has_params_per_step_metrics_and_the_adapter(tiny_base_dir, color_splits_dir, tmp_path, tracker):
    from mlflow import MlflowClient

    tracked = tracker.start_run(
        "tiny/colors", tags={"dagster.partition": "tiny|colors"}, params=RECIPE.model_dump(mode="json")
    )
    result, _ = materialize_training(
        TrainerResource(device="cpu", launcher="subprocess"), tiny_base_dir, color_splits_dir, tmp_path, tracked
    )
    tracker.finish(tracked, {"final_train_loss": result.final_train_loss}, tmp_path / "out")

    client = MlflowClient(tracked.tracking_uri)
    run = client.get_run(tracked.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["dagster.partition"] == "tiny|colors"
    assert run.data.params["lora.r"] == "4" and run.data.params["method"] == "lora"
    history = client.get_metric_history(tracked.run_id, "train/loss")
    assert [m.step for m in history] == [1, 2, 4, 6] or len(history) >= 3, history
    assert client.get_metric_history(tracked.run_id, "eval/loss")[-1].step == 6
    assert run.data.metrics["final_train_loss"] == pytest.approx(result.final_train_loss)
    assert "adapter/adapter_config.json" in [a.path for a in client.list_artifacts(tracked.run_id, "adapter")]
