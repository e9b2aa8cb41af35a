"""``dataset`` (per task): seeded synthetic train / validation / test splits, as JSONL, with quality gates."""

import dagster as dg

from ftassets import plan
from ftassets.artifacts import write_manifest
from ftassets.defs.assets.common import GROUP, OWNERS, blocked, check_results, config_key
from ftassets.defs.partitions import ProjectPartitions
from ftassets.defs.resources import ArtifactStoreResource, ProjectResource

CHECKS = (
    "no_missing_fields",
    "label_balance",
    "no_duplicate_prompts",
    "no_train_test_contamination",
    "length_statistics",
)


def build(partitions: ProjectPartitions) -> dg.AssetsDefinition:
    @dg.asset(
        partitions_def=partitions.task,
        deps=[config_key("dataset")],
        group_name=GROUP,
        owners=OWNERS,
        kinds={"python", "jsonl"},
        code_version=plan.CODE_VERSIONS["dataset"],
        check_specs=[dg.AssetCheckSpec(name, asset="dataset", blocking=True) for name in CHECKS],
    )
    def dataset(context: dg.AssetExecutionContext, project: ProjectResource, artifacts: ArtifactStoreResource):
        """A task's train / validation / test splits, as JSONL, with quality gates: seeded synthetic rows, or the
        task's own data (its file, folder, ``datasets`` dataset or teacher LLM; ``source`` in tasks.yaml)."""
        from ftassets.data import datasets as data
        from ftassets.data.incoming import accepted_rows

        config, store = project.project, artifacts.store
        task = config.tasks[context.partition_key]
        step = plan.dataset_step(config, task.name)
        if task.config.source is None:
            built, origin = data.build_splits(task), {}
        else:
            from ftassets.data.user_data import build_splits_from_source

            cache = store.root / "cache" / "teacher" / task.name
            built, origin = build_splits_from_source(config, task, cache, context.log.info)
        splits, incoming = data.add_incoming(task, built, accepted_rows(config, task.name))
        outcomes = data.check_splits(task, splits)
        counts = {name: len(rows) for name, rows in splits.items()}
        failed = [o for o in outcomes if not o.passed]
        directory = store.path("dataset", task.name) if not failed else store.rejected_path("dataset", task.name)
        with store.writing(directory) as staging:
            data.write_splits(staging, splits)
            write_manifest(
                staging,
                asset="dataset",
                partition=task.name,
                fingerprint=step.fingerprint,
                task=task.config.model_dump(mode="json"),
                seed=task.config.seed,
                counts=counts,
                checks={o.name: o.passed for o in outcomes},
                **origin,
            )
        if failed:
            raise blocked("dataset", task.name, failed, directory)
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(directory)),
                **{f"{name}_rows": count for name, count in counts.items()},
                **incoming,
                **({"source": dg.MetadataValue.json(origin["source"])} if origin else {}),
                **({"duplicates_removed": origin["duplicates_removed"]} if origin else {}),
                **({"teacher": dg.MetadataValue.json(origin["teacher"])} if origin.get("teacher") else {}),
                "label_distribution": dg.MetadataValue.json(data.label_distribution(task, splits)),
                "length_statistics": dg.MetadataValue.json(data.length_stats(splits)),
                "preview": dg.MetadataValue.md(data.preview(splits).to_markdown(index=False)),
            },
            data_version=dg.DataVersion(step.fingerprint),
            check_results=check_results(outcomes),
        )

    return dataset
