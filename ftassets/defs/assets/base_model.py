"""``base_model`` (per model entry): the entry's base, built (embedded) or loaded and validated (Hugging Face)."""

import dagster as dg

from ftassets import plan
from ftassets.artifacts import directory_bytes, read_manifest, write_manifest
from ftassets.config.schemas import API_SOURCES
from ftassets.defs.assets.common import GROUP, OWNERS, config_key
from ftassets.defs.partitions import ProjectPartitions
from ftassets.defs.resources import ArtifactStoreResource, ProjectResource


def build(partitions: ProjectPartitions) -> dg.AssetsDefinition:
    @dg.asset(
        partitions_def=partitions.model,
        deps=[config_key("base_model")],
        group_name=GROUP,
        owners=OWNERS,
        kinds={"pytorch", "huggingface"},
        code_version=plan.CODE_VERSIONS["base_model"],
        pool="gpu",
    )
    def base_model(context: dg.AssetExecutionContext, project: ProjectResource, artifacts: ArtifactStoreResource):
        """The model entry's base: built (embedded) or loaded and validated (Hugging Face), saved once per base.

        Entries that share a base share one directory: the first materialization builds it, the
        others find it current (same fingerprint) and reuse it. An API base has no weights: its artifact
        is the record of the endpoint, deployment and price it names, and resolving it checks the
        credentials' variables first, so a missing one fails here, at once, by name."""
        config, store = project.project, artifacts.store
        base_name = config.base_of(context.partition_key)
        step = plan.base_step(config, context.partition_key)
        directory = store.path("base_model", base_name)
        if config.bases[base_name].source in API_SOURCES:
            from ftassets.azure.settings import resolve_base

            target = resolve_base(config, base_name)
            with store.lock(f"base_model-{base_name}"), store.writing(directory) as staging:
                write_manifest(
                    staging, asset="base_model", base=base_name, fingerprint=step.fingerprint, config=step.params,
                    api=target.describe(),
                )  # fmt: skip
            return dg.MaterializeResult(
                metadata={
                    "path": dg.MetadataValue.path(str(directory)),
                    "base": base_name,
                    "weights": "none: served by the API",
                    "api": dg.MetadataValue.json(target.describe()),
                },
                data_version=dg.DataVersion(step.fingerprint),
            )
        from ftassets.models.bases import prepare_base

        with store.lock(f"base_model-{base_name}"):
            manifest = read_manifest(directory)
            damage = store.damage("base_model", base_name) if manifest is not None else None
            built = manifest is None or manifest.get("fingerprint") != step.fingerprint or damage is not None
            if damage:
                context.log.warning(f"rebuilding base {base_name!r}: {damage}")
            if built:
                with store.writing(directory) as staging:
                    summary = prepare_base(base_name, config.bases[base_name], staging, context.log.info)
                    manifest = write_manifest(
                        staging, asset="base_model", base=base_name, fingerprint=step.fingerprint,
                        config=step.params, summary=summary,
                    )  # fmt: skip
            else:
                context.log.info(f"base {base_name!r} is current at {directory}; reusing it")
        summary = manifest["summary"]
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(directory)),
                "base": base_name,
                "built_in_this_run": built,
                "architecture": summary["architecture"],
                "parameters": summary["parameters"],
                "vocab_size": summary["vocab_size"],
                "special_tokens": dg.MetadataValue.json(
                    {k: summary[k] for k in ("bos_token", "eos_token", "pad_token")}
                ),
                "chat_template": dg.MetadataValue.md(f"```jinja\n{summary['chat_template']}\n```"),
                "size_mb": round(directory_bytes(directory) / 1e6, 2),
            },
            data_version=dg.DataVersion(step.fingerprint),
        )

    return base_model
