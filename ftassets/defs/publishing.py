"""Publishing a materialized artifact (an adapter, a merged model, a GGUF export) to the model store."""

import dagster as dg

from ftassets.defs.checks import failed_publish_gates
from ftassets.defs.partitions import cell_key
from ftassets.defs.resources import ArtifactStoreResource


class PublishConfig(dg.Config):
    asset: str = "adapter"
    model: str
    task: str


@dg.op(tags={"kind": "storage"})
def publish_artifact(
    context: dg.OpExecutionContext,
    config: PublishConfig,
    artifacts: ArtifactStoreResource,
    model_store: dg.ConfigurableResource,
) -> dg.Output[str]:
    """Upload ``<asset>/<model>/<task>`` with its manifest to the model store, under the same key; refused while the
    cell's evaluation has a failed ``no_regression`` or ``no_under_triage`` check."""
    from ftassets.artifacts import read_manifest

    directory = artifacts.store.path(config.asset, config.model, config.task)
    if read_manifest(directory) is None:
        raise FileNotFoundError(
            f"{directory}: no materialized {config.asset} for {config.model}/{config.task}; materialize it first"
        )
    key = f"{config.asset}/{config.model}/{config.task}"
    partition = str(cell_key(config.task, config.model))
    if failed := failed_publish_gates(context.instance, partition):
        raise dg.Failure(
            description=f"refusing to publish {key}: the evaluation of partition {partition} failed check(s) "
            f"{', '.join(failed)}; publish once a new evaluation of the cell passes them. "
            + " | ".join(f"{name}: {description}" for name, description in failed.items()),
            metadata={"partition": partition, "failed_checks": sorted(failed)},
        )
    with model_store.store() as store:
        stored = store.upload(directory, key)
    context.log.info(f"published {key} ({stored.bytes} bytes, {len(stored.files)} files) to {stored.location}")
    return dg.Output(
        stored.location, metadata={"location": stored.location, "bytes": stored.bytes, "files": len(stored.files)}
    )


@dg.job(description="Upload one materialized artifact (default: an adapter) to the configured model store.")
def publish_to_model_store():
    publish_artifact()
