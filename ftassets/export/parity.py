"""Is the GGUF the same model as the merged checkpoint? Tokenizer, metadata, greedy and logit parity.

Every comparison runs the transformers model and tokenizer (the merged model as evaluation loads it)
against llama.cpp on the written file: identical token ids on the test prompts and on strings that
tokenizers get wrong (spaces, newlines, digits, emoji, CJK, special tokens); the chat template and the
BOS/EOS/pad ids llama.cpp reads; greedy decodes of the test prompts; and, on the same token ids (prompt
plus the transformers greedy continuation), top-1 agreement and logit deltas.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

TOKENIZER_PROBES = (
    "Hello world",
    " leading space,  two spaces,   three, trailing ",
    "tab\tand\nnewline\n\nblank line\r\nwindows",
    "digits 0 7 42 1234567 3.14159 2026-12-01 1,000,000",
    "emoji 🙂 🚀👍🏽 family 👨‍👩‍👧",
    "CJK 中文分词 日本語のテキスト 한국어",
    "accents café naïve Ångström",
    "contractions it's we're they'll I'd",
    "code: def f(x): return x**2  # ok",
)


@dataclass
class ParityReport:
    tokenizer_texts: int = 0
    tokenizer_mismatches: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    greedy: dict[str, dict[str, Any]] = field(default_factory=dict)
    logits: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def tokenizer_texts(tokenizer, conversations: list[list[dict[str, str]]]) -> list[str]:
    """Probe strings, each special token in text, the raw prompts and the prompts as the chat template renders them."""
    specials = [t for t in dict.fromkeys(tokenizer.all_special_tokens) if t]
    with_specials = [f"{token}text around {token} it" for token in specials]
    prompts = [m["content"] for conversation in conversations for m in conversation]
    rendered = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    return list(dict.fromkeys([*TOKENIZER_PROBES, *with_specials, *prompts, *rendered]))


def tokenizer_mismatches(tokenizer, llm, texts: list[str]) -> list[dict[str, Any]]:
    mismatches = []
    for text in texts:
        expected = tokenizer.encode(text, add_special_tokens=False)
        actual = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        if expected != actual:
            first = next(
                (i for i, (a, b) in enumerate(zip(expected, actual)) if a != b), min(len(expected), len(actual))
            )
            mismatches.append(
                {
                    "text": text[:120],
                    "first_difference": first,
                    "transformers": expected[first : first + 8],
                    "llama_cpp": actual[first : first + 8],
                }
            )
    return mismatches


def metadata_comparison(tokenizer, llm) -> dict[str, dict[str, Any]]:
    """Each field as the merged model has it and as llama.cpp read it from the GGUF. An id the merged model
    lacks must be absent from the file (llama.cpp would otherwise use a default); one it has must also be
    what llama.cpp uses at run time."""
    metadata = llm.metadata

    def stored(key: str) -> int | None:
        return int(metadata[key]) if key in metadata else None

    fields = {
        "chat_template": (tokenizer.chat_template, metadata.get("tokenizer.chat_template")),
        "bos_token_id": (tokenizer.bos_token_id, stored("tokenizer.ggml.bos_token_id")),
        "eos_token_id": (tokenizer.eos_token_id, stored("tokenizer.ggml.eos_token_id")),
        "pad_token_id": (tokenizer.pad_token_id, stored("tokenizer.ggml.padding_token_id")),
    }
    if tokenizer.bos_token_id is not None:
        fields["bos_token_id_at_run_time"] = (tokenizer.bos_token_id, llm.token_bos())
    if tokenizer.eos_token_id is not None:
        fields["eos_token_id_at_run_time"] = (tokenizer.eos_token_id, llm.token_eos())
    return {
        name: {"merged_model": hf, "gguf": gguf_value, "equal": hf == gguf_value}
        for name, (hf, gguf_value) in fields.items()
    }


def transformers_greedy(model, prompt_ids: list[list[int]], stop_ids: list[int], new_tokens: int) -> list[list[int]]:
    import torch

    continuations = []
    with torch.inference_mode():
        for ids in prompt_ids:
            output = model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=new_tokens,
                do_sample=False,
                num_beams=1,
                eos_token_id=stop_ids,
                pad_token_id=stop_ids[0],
            )
            continuations.append(_cut_after_stop(output[0, len(ids) :].tolist(), stop_ids))
    return continuations


def llama_greedy(llm, prompt_ids: list[list[int]], stop_ids: list[int], new_tokens: int) -> list[list[int]]:
    continuations = []
    for ids in prompt_ids:
        llm.reset()
        llm.eval(ids)
        generated: list[int] = []
        while len(generated) < new_tokens:
            token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            generated.append(token)
            if token in stop_ids or llm.n_tokens >= llm.n_ctx():
                break
            llm.eval([token])
        continuations.append(generated)
    return continuations


def greedy_agreement(
    prompt_ids: list[list[int]],
    expected: list[list[int]],
    actual: list[list[int]],
    llama_top1: list[np.ndarray],
    preference: list[np.ndarray] | None = None,
    near_tie: float = 0.0,
) -> dict[str, Any]:
    """How far llama.cpp's greedy decoding follows transformers' on the generated tokens.

    ``agreement`` (the gated figure) is the share of transformers' generated tokens that llama.cpp also
    ranks first given the same prefix, as llama.cpp's own perplexity tool reports "same top"; one flipped
    near-tie then costs one token instead of every token after it. A position where llama.cpp picks another
    token but transformers preferred its own by at most ``near_tie`` logits (``preference``, from
    ``logit_statistics``) counts as agreeing: a rounding near-tie, not a divergence (``near_tie_flips``;
    ``exact_agreement`` leaves them out). ``free_running_agreement`` compares the two free-running decodes
    position by position (a missing position counts as a disagreement), and ``identical_sequences`` counts
    prompts whose whole answers are equal."""
    generated = sum(len(c) for c in expected)
    matches = near_ties = 0
    for index, (p, c) in enumerate(zip(prompt_ids, expected)):
        window = slice(len(p) - 1, len(p) - 1 + len(c))
        agree = llama_top1[index][window] == np.asarray(c)
        matches += int(agree.sum())
        if preference is not None:
            near_ties += int(((~agree) & (preference[index][window] <= near_tie)).sum())
    positions = sum(max(len(a), len(b)) for a, b in zip(expected, actual))
    free_matches = sum(x == y for a, b in zip(expected, actual) for x, y in zip(a, b))
    return {
        "agreement": (matches + near_ties) / generated if generated else 1.0,
        "exact_agreement": matches / generated if generated else 1.0,
        "near_tie_flips": near_ties,
        "near_tie_logits": near_tie,
        "tokens": generated,
        "matching_tokens": matches,
        "free_running_agreement": free_matches / positions if positions else 1.0,
        "identical_sequences": sum(a == b for a, b in zip(expected, actual)),
        "sequences": len(expected),
    }


def logit_statistics(
    model, llm, sequences: list[list[int]]
) -> tuple[dict[str, float], list[np.ndarray], list[np.ndarray]]:
    """On the same token ids: how often the top-1 token agrees and how far the logits are apart; llama.cpp's
    top-1 token at every position of every sequence; and how much transformers prefers its own top-1 token over
    llama.cpp's there (0 where they agree)."""
    import torch

    agree = total = 0
    max_delta, delta_sum, count = 0.0, 0.0, 0
    llama_top1, preference = [], []
    with torch.inference_mode():
        for ids in sequences:
            expected = model(torch.tensor([ids])).logits[0].float().numpy()
            llm.reset()
            llm.eval(ids)
            actual = np.asarray(llm.scores[: len(ids)], dtype=np.float32)
            delta = np.abs(expected - actual)
            llama_top1.append(actual.argmax(-1))
            preference.append(expected.max(-1) - expected[np.arange(len(ids)), llama_top1[-1]])
            agree += int((expected.argmax(-1) == llama_top1[-1]).sum())
            total += len(ids)
            max_delta = max(max_delta, float(delta.max()))
            delta_sum += float(delta.sum())
            count += delta.size
    statistics = {
        "top1_agreement": agree / total if total else 1.0,
        "positions": total,
        "max_abs_logit_delta": max_delta,
        "mean_abs_logit_delta": delta_sum / count if count else 0.0,
    }
    return statistics, llama_top1, preference


def _cut_after_stop(ids: list[int], stop_ids: list[int]) -> list[int]:
    end = next((k + 1 for k, token in enumerate(ids) if token in stop_ids), len(ids))
    return ids[:end]
