"""Training in a child process: ``python -m ftassets.training.entry REQUEST.json``.

The trainer resource starts this through Dagster Pipes, either directly (one process; its GPU memory is
released when it exits) or under ``accelerate launch`` (one process per device, e.g. DDP over gloo on
CPU or NCCL on GPUs). Rank 0 streams its log lines into the Dagster run through Pipes and writes the
``TrainingResult`` beside the request for the parent to read.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

RESULT_FILE = "training_result.json"


@dataclass(frozen=True)
class TrainingRequest:
    base_dir: str
    splits_dir: str
    recipe: dict
    out_dir: str
    checkpoint_dir: str
    device: str
    mlflow_tracking_uri: str | None = None
    mlflow_run_id: str | None = None

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2))
        return path


def run(request: TrainingRequest, log=print):
    from ftassets.tracking import MlflowRunRef
    from ftassets.training.recipes import parse_recipe
    from ftassets.training.tokenize import load_tokenized
    from ftassets.training.trainer import train

    mlflow_run = MlflowRunRef(request.mlflow_tracking_uri, request.mlflow_run_id) if request.mlflow_run_id else None
    return train(
        Path(request.base_dir),
        load_tokenized(Path(request.splits_dir)),
        parse_recipe(request.recipe),
        Path(request.out_dir),
        Path(request.checkpoint_dir),
        device=request.device,
        log=log,
        mlflow_run=mlflow_run,
    )


def main(argv: list[str]) -> int:
    from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, open_dagster_pipes

    request_path = Path(argv[0])
    request = TrainingRequest(**json.loads(request_path.read_text()))
    rank = int(os.environ.get("RANK", "0"))
    started_by_pipes = DAGSTER_PIPES_CONTEXT_ENV_VAR in os.environ
    with open_dagster_pipes() if rank == 0 and started_by_pipes else nullcontext() as pipes:
        log = pipes.log.info if pipes else (lambda line: print(f"[rank {rank}] {line}", flush=True))
        result = run(request, log)
        if rank == 0:
            (request_path.parent / RESULT_FILE).write_text(json.dumps(result.to_dict()))
            if pipes:
                pipes.report_custom_message({"final_train_loss": result.final_train_loss, "steps": result.steps})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
