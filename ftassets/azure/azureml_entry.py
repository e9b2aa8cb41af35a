"""The Azure ML side of the ``azureml`` launcher: train with the inputs the job mounted, write the adapter
to its output, and (rank 0) stream logs and the result to Dagster through Pipes over blob storage."""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import nullcontext
from pathlib import Path


def main(argv: list[str]) -> int:
    from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR

    from ftassets.azure.azureml import PIPES_URL_VARIABLE
    from ftassets.devices import resolve_device
    from ftassets.training.entry import RESULT_FILE, TrainingRequest, run

    parser = argparse.ArgumentParser(prog=__name__)
    for flag in ("--recipe", "--base", "--splits", "--out", "--checkpoints"):
        parser.add_argument(flag, required=True)
    args = parser.parse_args(argv)
    request = TrainingRequest(
        base_dir=args.base,
        splits_dir=args.splits,
        recipe=json.loads(Path(args.recipe).read_text()),
        out_dir=args.out,
        checkpoint_dir=args.checkpoints,
        device=resolve_device("auto"),
    )
    rank = int(os.environ.get("RANK", "0"))
    with (
        _pipes(os.environ[PIPES_URL_VARIABLE])
        if rank == 0 and DAGSTER_PIPES_CONTEXT_ENV_VAR in os.environ
        else nullcontext()
    ) as pipes:
        log = pipes.log.info if pipes else (lambda line: print(f"[rank {rank}] {line}", flush=True))
        result = run(request, log)
        if rank == 0:
            (Path(args.checkpoints) / RESULT_FILE).write_text(json.dumps(result.to_dict()))
            if pipes:
                pipes.report_custom_message(result.to_dict())
    return 0


def _pipes(storage_url: str):
    from dagster_pipes import PipesAzureBlobStorageContextLoader, PipesAzureBlobStorageMessageWriter, open_dagster_pipes

    from ftassets.azure.clients import blob_service

    client = blob_service(storage_url)
    return open_dagster_pipes(
        context_loader=PipesAzureBlobStorageContextLoader(client=client),
        message_writer=PipesAzureBlobStorageMessageWriter(client=client),
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
