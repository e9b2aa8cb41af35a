"""The exports' evaluation rows (``gguf-q8_0``, ``gguf-q4_k_m``) of a cell whose fine-tune has a GGUF export.

Each evaluated file is served by its own ``llama_cpp.server`` and scored through the OpenAI-compatible
backend on the same test rows as the merged model, so the comparison pairs them example by example.
Each row also carries what the quantization changed against the merged model: the primary metric's
drop, the file size next to the merged model's, and the time to answer the whole test split as a ratio
of the merged model's (per-request latencies are not comparable: the local backend times batches). For a
free-text task, the answers' semantic similarity comes from the same embedder as the merged model's row.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftassets.artifacts import ArtifactStore, directory_bytes, read_manifest
from ftassets.config import ProjectConfig
from ftassets.plan import not_exportable_reason

if TYPE_CHECKING:
    from ftassets.evaluation.evaluate import VariantEvaluation
    from ftassets.evaluation.similarity import Embedder

EVALUATED_QUANT_TYPES = ("q8_0", "q4_k_m")
SERVED_CONTEXT = 4096


def variant_name(quant_type: str) -> str:
    return f"gguf-{quant_type}"


def exported_manifest(
    project: ProjectConfig, store: ArtifactStore, model: str, task_name: str
) -> dict[str, Any] | None:
    """The cell's gguf_export manifest, checked to be built from the current merged model and to have passed
    its parity gate; None when the cell has nothing to export."""
    if not_exportable_reason(project, model) is not None:
        return None
    directory = store.path("gguf_export", model, task_name)
    manifest = read_manifest(directory)
    merged = store.fingerprint_if_built("merged_model", model, task_name)
    if manifest is None or manifest["upstream"]["merged_model"] != merged:
        raise FileNotFoundError(
            f"gguf_export for {model}/{task_name} is missing or older than its merged_model at {directory}; "
            "materialize gguf_export first"
        )
    failed = [name for name, passed in manifest["summary"]["checks"].items() if not passed]
    if failed:
        raise ValueError(
            f"gguf_export for {model}/{task_name} failed its parity check(s) {failed}; see the asset's check "
            f"results or {directory / 'manifest.json'}, fix the export and materialize gguf_export again"
        )
    return manifest


def gguf_variants(
    project: ProjectConfig,
    store: ArtifactStore,
    model: str,
    task_name: str,
    task,
    test_rows: list[dict[str, Any]],
    merged: VariantEvaluation,
    settings,
    log: Callable[[str], None],
    threads: int | None = None,
    embedder: Embedder | None = None,
) -> list:
    """One evaluated row per exported quantization in ``EVALUATED_QUANT_TYPES`` (none when not exportable), each
    compared with ``merged`` (the merged model's evaluation on the same rows; an export that answers every row as it
    did takes its intervals); ``embedder``: the merged row's (``similarity.embedder_for``), for a free-text task's
    semantic similarity."""
    from ftassets.backends.factory import backend_for_gguf
    from ftassets.evaluation.evaluate import VariantEvaluation, evaluate_variant

    manifest = exported_manifest(project, store, model, task_name)
    if manifest is None:
        return []
    directory = store.path("gguf_export", model, task_name)
    merged_mb = directory_bytes(store.path("merged_model", model, task_name)) / 1e6
    quantizations = manifest["summary"]["quantizations"]
    primary = task.primary_metric
    variants = []
    for quant_type in EVALUATED_QUANT_TYPES:
        facts = quantizations[quant_type]
        path = Path(directory) / facts["file"]
        log(f"evaluating {path.name} through llama_cpp.server on {task.name!r} ({len(test_rows)} examples)")
        context_length = min(manifest["summary"]["context_length"], SERVED_CONTEXT)
        alias = f"{model}-{task_name}-{quant_type}"
        with backend_for_gguf(path, alias, context_length, name=model, threads=threads) as backend:
            result = evaluate_variant(
                backend,
                task,
                test_rows,
                model,
                variant_name(quant_type),
                settings,
                log,
                embedder=embedder,
                same_rows_as=merged,
            )
        row = result.row | {
            "quant_type": quant_type,
            "file_size_mb": facts["size_mb"],
            "merged_size_mb": round(merged_mb, 3),
            f"delta_vs_merged_{primary}": result.row[primary] - merged.row[primary],
            "seconds_vs_merged": _ratio(result.row["seconds"], merged.row["seconds"]),
        }
        variants.append(VariantEvaluation(row, result.predictions))
    return variants


def _ratio(value: float, reference: float) -> float:
    return value / reference if reference else math.nan
