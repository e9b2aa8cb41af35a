"""``gguf_export`` (per task x model): the merged model as GGUF files for llama.cpp and Ollama, behind a parity gate."""

from typing import Any

import dagster as dg

from ftassets import plan
from ftassets.artifacts import write_manifest
from ftassets.defs.assets.common import (
    GROUP,
    OWNERS,
    TASK_OF_CELL,
    check_results,
    config_key,
    not_applicable,
    upstream_versions,
)
from ftassets.defs.partitions import ProjectPartitions, cell_of
from ftassets.defs.resources import ArtifactStoreResource, ProjectResource
from ftassets.export.export import CHECKS


def build(partitions: ProjectPartitions) -> dg.AssetsDefinition:
    @dg.asset(
        partitions_def=partitions.task_model,
        deps=[config_key("gguf_export"), "merged_model", dg.AssetDep("dataset", partition_mapping=TASK_OF_CELL)],
        group_name=GROUP,
        owners=OWNERS,
        kinds={"gguf"},
        code_version=plan.CODE_VERSIONS["gguf_export"],
        check_specs=[dg.AssetCheckSpec(name, asset="gguf_export", blocking=True) for name in CHECKS],
    )
    def gguf_export(context: dg.AssetExecutionContext, project: ProjectResource, artifacts: ArtifactStoreResource):
        """The merged model as f16, q8_0 and q4_k_m GGUF files for llama.cpp and Ollama, with a Modelfile, behind a
        parity gate: identical token ids, chat template and special ids, and q8_0 greedy decoding that agrees
        with transformers on the test prompts."""
        from ftassets.data.datasets import read_splits
        from ftassets.export.export import ExportSettings, export_gguf
        from ftassets.training.tokenize import chat_messages

        config, store = project.project, artifacts.store
        task_name, model = cell_of(context)
        step = plan.cell_plan(config, task_name, model)["gguf_export"]
        if not step.applies:
            return not_applicable(step, checks=CHECKS)
        task, settings = config.tasks[task_name], ExportSettings()
        upstream = upstream_versions(store, merged_model=("merged_model", model, task_name))
        version = plan.fingerprint("gguf_export", step.params, upstream)
        test_rows = read_splits(store.path("dataset", task_name))["test"][: settings.parity_prompts]
        conversations = [chat_messages(row["prompt"], system_prompt=task.config.system_prompt) for row in test_rows]
        directory = store.path("gguf_export", model, task_name)
        with store.writing(directory) as staging:
            result = export_gguf(
                store.path("merged_model", model, task_name), staging, f"{model}-{task_name}", conversations,
                settings, context.log.info,
            )  # fmt: skip
            write_manifest(
                staging, asset="gguf_export", partition=[task_name, model], fingerprint=version, upstream=upstream,
                summary=result.summary,
            )  # fmt: skip
        summary = result.summary
        quantizations = summary["quantizations"]
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(directory)),
                "files": dg.MetadataValue.md(_gguf_table(summary)),
                **{f"{quant}_size_mb": facts["size_mb"] for quant, facts in quantizations.items()},
                **{f"{quant}_greedy_agreement": g["agreement"] for quant, g in summary["parity"]["greedy"].items()},
                **{f"{quant}_top1_agreement": s["top1_agreement"] for quant, s in summary["parity"]["logits"].items()},
                "fallback_tensors": dg.MetadataValue.json({q: f["fallback_tensors"] for q, f in quantizations.items()}),
                "modelfile": dg.MetadataValue.path(str(directory / "Modelfile"))
                if summary["modelfile"]
                else summary["modelfile_problem"],
            },
            data_version=dg.DataVersion(version),
            check_results=check_results(result.checks),
        )

    return gguf_export


def _gguf_table(summary: dict[str, Any]) -> str:
    rows = [
        "| quant type | file | MB | tensor types | greedy agreement | top-1 agreement | max abs logit delta |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for quant, facts in summary["quantizations"].items():
        greedy, logits = summary["parity"]["greedy"][quant], summary["parity"]["logits"][quant]
        rows.append(
            f"| {quant} | {facts['file']} | {facts['size_mb']} | {facts['tensor_types']} | {greedy['agreement']:.3f} | "
            f"{logits['top1_agreement']:.3f} | {logits['max_abs_logit_delta']:.4f} |"
        )
    return "\n".join(rows)
