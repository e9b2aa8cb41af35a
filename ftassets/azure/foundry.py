"""Fine-tuning open models of the Azure AI Foundry catalog (for example Phi-4-mini-instruct from the ``azureml``
registry) with azure-ai-ml's ``create_finetuning_job``, from the same chat JSONL as Azure OpenAI fine-tuning.

``finetuning_job`` builds the job (``job._to_rest_object().as_dict()`` is the exact REST body, offline);
``submit_and_wait`` submits it to a workspace and follows it to a terminal status. Not yet a model entry of
the graph: evaluating the result needs a serverless deployment of the registered model.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

TASK_TYPES = {"chat_completion": "ChatCompletion", "text_completion": "TextCompletion"}
TERMINAL = ("Completed", "Failed", "Canceled", "NotResponding")


def finetuning_job(recipe: Any, training_data: Path | str, validation_data: Path | str, display_name: str | None = None):
    """The ``CustomModelFineTuningJob`` of a ``foundry_sft`` recipe; local files are uploaded on submission."""
    import warnings

    from azure.ai.ml.finetuning import create_finetuning_job

    hyperparameters = {"num_train_epochs": str(recipe.epochs), "learning_rate": str(recipe.learning_rate),
                       "per_device_train_batch_size": str(recipe.batch_size), **recipe.extra_hyperparameters}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        job = create_finetuning_job(
            model=recipe.model, task=TASK_TYPES[recipe.task], training_data=str(training_data),
            validation_data=str(validation_data), output_model_name_prefix=recipe.output_model_name_prefix,
            hyperparameters=hyperparameters, compute=recipe.compute,
            instance_types=None if recipe.compute else list(recipe.instance_types),
        )
    if display_name:
        job.display_name = display_name
    return job


def rest_body(job: Any) -> dict[str, Any]:
    return job._to_rest_object().as_dict()


def submit_and_wait(ml_client: Any, job: Any, log: Callable[[str], None], poll_interval_s: float = 30.0,
                    sleep: Callable[[float], None] = time.sleep) -> Any:
    """Submit and poll until Completed; a failed or canceled job raises with its status."""
    created = ml_client.jobs.create_or_update(job)
    log(f"Foundry fine-tuning job {created.name} submitted ({job.model.path if hasattr(job.model, 'path') else job.model})")
    status = created.status
    while status not in TERMINAL:
        sleep(poll_interval_s)
        status = ml_client.jobs.get(created.name).status
        log(f"Foundry job {created.name}: {status}")
    if status != "Completed":
        raise RuntimeError(f"Foundry fine-tuning job {created.name} ended {status}; see it in Azure AI Foundry / ML studio")
    return ml_client.jobs.get(created.name)
