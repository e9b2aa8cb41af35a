"""Export one merged model to GGUF files, prove each is the same model, and write an Ollama Modelfile.

``export_gguf`` writes the f16 file with the project's writer, quantizes it with llama.cpp, runs the
parity comparisons on every file, and returns the facts for the manifest plus the parity gate's
outcomes (the asset turns those into blocking checks).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftassets.data.datasets import CheckOutcome
from ftassets.export import parity
from ftassets.export.gguf_writer import write_gguf
from ftassets.export.llama_runtime import default_threads, load_llama
from ftassets.export.modelfile import TemplateDerivationError, modelfile
from ftassets.export.quantize import fallback_log_lines, quantize, tensor_types

CHECKS = ("gguf_tokenizer_parity", "gguf_template_and_special_ids", "gguf_greedy_parity")


@dataclass(frozen=True)
class ExportSettings:
    """What is exported and how strictly it is compared; part of the export's fingerprint."""

    quant_types: tuple[str, ...] = ("f16", "q8_0", "q4_k_m")
    gated_quant_type: str = "q8_0"
    min_greedy_agreement: float = 0.95
    near_tie_logits: float = 0.1
    """A greedy flip where transformers preferred its token by at most this many logits is a rounding near-tie, not a
    divergence: q8_0 moved a fine-tune of the embedded model by 0.015 logits on average, and its flips sat at margins
    of 0.015 and 0.04 (a wrong layout moves logits by whole units)."""
    parity_prompts: int = 8
    parity_new_tokens: int = 32
    modelfile_quant_type: str = "q8_0"
    threads: int = field(default_factory=default_threads)

    def params(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items() if k != "threads"}


@dataclass(frozen=True)
class ExportResult:
    summary: dict[str, Any]
    checks: list[CheckOutcome]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)


def gguf_file_name(label: str, quant_type: str) -> str:
    return f"{label}-{quant_type}.gguf"


def export_gguf(
    merged_dir: Path,
    out_dir: Path,
    label: str,
    conversations: list[list[dict[str, str]]],
    settings: ExportSettings = ExportSettings(),
    log: Callable[[str], None] = print,
) -> ExportResult:
    """GGUF files of ``merged_dir`` in ``out_dir`` (one per quant type), a Modelfile, and the parity gate."""
    from ftassets.loading import load_config
    from ftassets.training.strategies import load_tokenizer

    if "f16" not in settings.quant_types or settings.gated_quant_type not in settings.quant_types:
        raise ValueError(
            f"export settings: quant_types {settings.quant_types} must include f16 and {settings.gated_quant_type!r}"
        )
    merged_dir, out_dir = Path(merged_dir), Path(out_dir)
    writer_summary, files = _write_files(merged_dir, out_dir, label, settings, log)
    tokenizer = load_tokenizer(merged_dir)
    report, stop_ids = _compare(
        merged_dir, out_dir, label, tokenizer, conversations[: settings.parity_prompts], settings
    )
    checks = _gate(report, settings)
    context_length = load_config(merged_dir).max_position_embeddings
    modelfile_text, modelfile_problem = _modelfile(
        tokenizer, stop_ids, gguf_file_name(label, settings.modelfile_quant_type), context_length
    )
    if modelfile_text is not None:
        (out_dir / "Modelfile").write_text(modelfile_text)
    summary = {
        "label": label,
        "writer": writer_summary,
        "quantizations": files,
        "parity": report.to_dict(),
        "checks": {check.name: check.passed for check in checks},
        "stop_tokens": tokenizer.convert_ids_to_tokens(stop_ids),
        "context_length": context_length,
        "tokenizer_sha256": _sha256((merged_dir / "tokenizer.json").read_bytes()),
        "chat_template_sha256": _sha256(tokenizer.chat_template.encode()),
        "modelfile": "Modelfile" if modelfile_text is not None else None,
        "modelfile_problem": modelfile_problem,
        "settings": settings.params(),
    }
    return ExportResult(summary, checks)


def _write_files(
    merged_dir: Path, out_dir: Path, label: str, settings: ExportSettings, log: Callable[[str], None]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The f16 file by our writer, each other quant type by llama.cpp from it; per file: time, size, tensor types."""
    started = time.perf_counter()
    source = out_dir / gguf_file_name(label, "f16")
    writer_summary = write_gguf(merged_dir, source, label)
    files: dict[str, dict[str, Any]] = {"f16": {"seconds": time.perf_counter() - started}}
    for quant_type in settings.quant_types:
        if quant_type == "f16":
            continue
        started = time.perf_counter()
        quant_log = quantize(source, out_dir / gguf_file_name(label, quant_type), quant_type, settings.threads)
        files[quant_type] = {"seconds": time.perf_counter() - started, "fallback_log": fallback_log_lines(quant_log)}
    for quant_type, facts in files.items():
        path = out_dir / gguf_file_name(label, quant_type)
        types = tensor_types(path, quant_type)
        facts |= {
            "file": path.name,
            "bytes": path.stat().st_size,
            "size_mb": round(path.stat().st_size / 1e6, 3),
            "tensor_types": types.counts,
            "fallback_tensors": types.fallbacks,
        }
        log(
            f"{path.name}: {facts['size_mb']} MB in {facts['seconds']:.2f} s, tensor types {types.counts}"
            + (f", llama.cpp fell back on {types.fallbacks}" if types.fallbacks else "")
        )
    return writer_summary, files


def _compare(
    merged_dir: Path,
    out_dir: Path,
    label: str,
    tokenizer,
    conversations: list[list[dict[str, str]]],
    settings: ExportSettings,
) -> tuple[parity.ParityReport, list[int]]:
    """Every file against the merged model in transformers: token ids, metadata, greedy decodes, logits."""
    from ftassets.training.strategies import load_causal_lm
    from ftassets.training.tokenize import encode_chats, stop_token_ids

    model = load_causal_lm(merged_dir, "cpu").eval()
    stop_ids = stop_token_ids(tokenizer, getattr(model, "generation_config", None))
    prompt_ids = encode_chats(tokenizer, conversations, add_generation_prompt=True)
    expected = parity.transformers_greedy(model, prompt_ids, stop_ids, settings.parity_new_tokens)
    sequences = [p + c for p, c in zip(prompt_ids, expected)]
    texts = parity.tokenizer_texts(tokenizer, conversations)
    n_ctx = max(map(len, sequences), default=16) + settings.parity_new_tokens + 8
    report = parity.ParityReport(tokenizer_texts=len(texts))
    for quant_type in settings.quant_types:
        llm = load_llama(out_dir / gguf_file_name(label, quant_type), n_ctx, settings.threads)
        try:
            report.tokenizer_mismatches += [
                m | {"quant_type": quant_type} for m in parity.tokenizer_mismatches(tokenizer, llm, texts)
            ]
            report.metadata[quant_type] = parity.metadata_comparison(tokenizer, llm)
            actual = parity.llama_greedy(llm, prompt_ids, stop_ids, settings.parity_new_tokens)
            report.logits[quant_type], llama_top1, preference = parity.logit_statistics(model, llm, sequences)
            report.greedy[quant_type] = parity.greedy_agreement(
                prompt_ids, expected, actual, llama_top1, preference, settings.near_tie_logits
            )
        finally:
            llm.close()
    return report, stop_ids


def _gate(report: parity.ParityReport, settings: ExportSettings) -> list[CheckOutcome]:
    mismatches = report.tokenizer_mismatches
    tokenizer = CheckOutcome(
        "gguf_tokenizer_parity",
        not mismatches,
        f"{len(mismatches)} of {report.tokenizer_texts} texts x {len(settings.quant_types)} files tokenize "
        "differently in llama.cpp",
        {"mismatches": mismatches[:10], "texts": report.tokenizer_texts},
    )
    unequal = {q: [name for name, f in fields.items() if not f["equal"]] for q, fields in report.metadata.items()}
    unequal = {q: names for q, names in unequal.items() if names}
    metadata = CheckOutcome(
        "gguf_template_and_special_ids",
        not unequal,
        "chat template and BOS/EOS/pad ids equal the merged model's in every file"
        if not unequal
        else f"differs from the merged model: {unequal}",
        {
            q: {
                name: {k: v for k, v in f.items() if name != "chat_template" or k == "equal"}
                for name, f in fields.items()
            }
            for q, fields in report.metadata.items()
        },
    )
    gated = report.greedy[settings.gated_quant_type]
    greedy = CheckOutcome(
        "gguf_greedy_parity",
        gated["agreement"] >= settings.min_greedy_agreement,
        f"{settings.gated_quant_type} picks transformers' greedy token at {gated['agreement']:.1%} of the "
        f"{gated['tokens']} generated positions (first {settings.parity_new_tokens} per prompt, "
        f"{gated['sequences']} test prompts, same prefix; gate: {settings.min_greedy_agreement:.0%}), counting "
        f"{gated['near_tie_flips']} flip(s) where transformers preferred its token by at most "
        f"{settings.near_tie_logits:g} logits; "
        f"free-running decodes agree on {gated['free_running_agreement']:.1%}, "
        f"{gated['identical_sequences']} of {gated['sequences']} answers identical",
        {"greedy": report.greedy, "logits": report.logits},
    )
    return [tokenizer, metadata, greedy]


def _modelfile(tokenizer, stop_ids: list[int], gguf_file: str, context_length: int) -> tuple[str | None, str | None]:
    def render(messages, add_generation_prompt):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    try:
        return modelfile(gguf_file, render, tokenizer.convert_ids_to_tokens(stop_ids), context_length), None
    except TemplateDerivationError as error:
        return None, str(error)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
