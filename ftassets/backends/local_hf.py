"""A transformers causal LM in this process, generating greedily in length-sorted, left-padded batches.

A batch holds at most ``batch_size`` prompts and at most ``max_batch_tokens`` padded prompt tokens, so
short prompts share few large batches (fewer, better-filled forward passes) and long ones stay within memory.

Prompts are encoded with the same chat-template code as training, and generation stops on the same
end-of-turn token that training labels (``stop_token_ids``), plus the eos ids the model declares.

Prefix caching: the token prefix that every prompt of a ``generate`` call shares (the chat template's
opening, a system prompt, few-shot examples) is run through the model once; each batch starts from a copy
of that KV cache and only processes its prompts' own tokens. A batch then reads
``[shared prefix | left padding | own tokens]``: the attention mask hides the padding and the position ids
follow the mask (``cumsum``), so every prompt sees exactly the positions and keys it would see alone.
It applies where the cache is transformers' ``DynamicCache`` and attention is ``sdpa`` or ``eager``
(which honour a mask with padding in the middle); elsewhere, and for prompt-learning adapters, batches
are plain left-padded prompts.
"""

from __future__ import annotations

import copy
import gc
import os
import time
from pathlib import Path

import torch
from transformers import DynamicCache, GenerationConfig

from ftassets.backends.base import Generation, ModelBackend
from ftassets.devices import inference_dtype, peak_memory_mb, reset_peak_memory, resolve_device
from ftassets.training.strategies import load_causal_lm, load_tokenizer
from ftassets.training.tokenize import encode_chats, stop_token_ids


class LocalHFBackend(ModelBackend):
    """Either pass a loaded ``model`` and ``tokenizer`` (kept on their device), or a ``model_dir`` to load."""

    def __init__(
        self,
        model: torch.nn.Module | None = None,
        tokenizer=None,
        *,
        model_dir: Path | None = None,
        device: str = "auto",
        batch_size: int = 128,
        max_batch_tokens: int = 16384,
        name: str = "local",
        prefix_cache: bool = True,
    ) -> None:
        if (model is None) == (model_dir is None):
            raise ValueError("pass either model (with tokenizer) or model_dir")
        if model is None:
            device = resolve_device(device)
            model = load_causal_lm(Path(model_dir), device, inference_dtype(device))
            tokenizer = tokenizer or load_tokenizer(Path(model_dir))
        if tokenizer is None:
            raise ValueError("a model passed directly needs its tokenizer")
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        self.batch_size, self.max_batch_tokens = batch_size, max_batch_tokens
        self.device = str(next(model.parameters()).device)
        self.stop_ids = stop_token_ids(tokenizer, getattr(model, "generation_config", None))
        # Left padding is masked out by the attention mask, so any id will do when a tokenizer has no pad.
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.stop_ids[0]
        # Virtual tokens (peft prefix/P-tuning) sit before the padding, so padding would shift their distance
        # to the prompt and change the logits; such models only batch prompts of equal length.
        self.pad_free = bool(getattr(getattr(model, "active_peft_config", None), "is_prompt_learning", False))
        attention = getattr(getattr(model, "config", None), "_attn_implementation", None)
        self.prefix_cache = prefix_cache and not self.pad_free and attention in ("sdpa", "eager")
        self.peak_memory_mb = 0.0

    def generate(self, conversations: list[list[dict[str, str]]], max_new_tokens: int) -> list[Generation]:
        prompts = encode_chats(self.tokenizer, conversations, add_generation_prompt=True)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            use_cache=True,
            eos_token_id=self.stop_ids,
            pad_token_id=self.pad_id,
        )
        results: dict[int, Generation] = {}
        reset_peak_memory(self.device)
        prefix, cache = self.shared_prefix(prompts)
        for batch in self._batches(order, [p[len(prefix) :] for p in prompts]):
            started = time.perf_counter()
            completions = self._generate_batch([prompts[i] for i in batch], config, prefix, cache)
            latency = time.perf_counter() - started
            for i, completion in zip(batch, completions):
                text = self.tokenizer.decode(completion, skip_special_tokens=True)
                results[i] = Generation(text, latency, len(prompts[i]), len(completion))
        self.peak_memory_mb = max(self.peak_memory_mb, peak_memory_mb(self.device))
        return [results[i] for i in range(len(prompts))]

    @torch.inference_mode()
    def shared_prefix(self, prompts: list[list[int]]) -> tuple[list[int], DynamicCache | None]:
        """The prefix all ``prompts`` share (leaving each at least one own token) and its KV cache, or ([], None)
        where prefix caching is off or the prefix is under two tokens."""
        if not self.prefix_cache or not prompts:
            return [], None
        prefix = os.path.commonprefix(prompts)[: min(map(len, prompts)) - 1]
        if len(prefix) < 2:
            return [], None
        cache = self.model(input_ids=torch.tensor([prefix], device=self.device), use_cache=True).past_key_values
        if type(cache) is not DynamicCache:
            return [], None
        return prefix, cache

    def _batches(self, order: list[int], prompts: list[list[int]]) -> list[list[int]]:
        """Consecutive prompts of ``order`` (shortest first), so each new prompt is its batch's longest
        (``prompts`` are the tokens each batch processes: without the cached shared prefix)."""
        batches: list[list[int]] = []
        for i in order:
            if (
                not batches
                or len(batches[-1]) == self.batch_size
                or (len(batches[-1]) + 1) * len(prompts[i]) > self.max_batch_tokens
                or (self.pad_free and len(prompts[i]) != len(prompts[batches[-1][0]]))
            ):
                batches.append([])
            batches[-1].append(i)
        return batches

    @torch.inference_mode()
    def _generate_batch(
        self,
        prompts: list[list[int]],
        config: GenerationConfig,
        prefix: list[int] = (),
        cache: DynamicCache | None = None,
    ) -> list[list[int]]:
        """Completion ids of each prompt, cut after the first stop token. With a ``cache`` of ``prefix`` (which every
        prompt starts with), only the tokens after it are processed, left-padded after the prefix."""
        own = [p[len(prefix) :] for p in prompts]
        width = len(prefix) + max(map(len, own))
        input_ids = torch.tensor(
            [list(prefix) + [self.pad_id] * (width - len(prefix) - len(p)) + p for p in own], device=self.device
        )
        attention_mask = torch.tensor(
            [[1] * len(prefix) + [0] * (width - len(prefix) - len(p)) + [1] * len(p) for p in own], device=self.device
        )
        kwargs = {}
        if cache is not None:
            kwargs["past_key_values"] = copy.deepcopy(cache)
            kwargs["past_key_values"].batch_repeat_interleave(len(prompts))
        output = self.model.generate(
            input_ids=input_ids, attention_mask=attention_mask, generation_config=config, **kwargs
        )
        completions = []
        for row in output[:, width:].tolist():
            end = next((k + 1 for k, token in enumerate(row) if token in self.stop_ids), len(row))
            completions.append(row[:end])
        return completions

    @torch.inference_mode()
    def perplexity(self, prompts: list[str], answers: list[str], system_prompt: str | None = None) -> float | None:
        """exp of the mean negative log-likelihood of every answer token (end of turn included), each answer
        conditioned on its prompt through the chat template, exactly the tokens training puts loss on."""
        from ftassets.training.strategies import PaddingCollator
        from ftassets.training.tokenize import IGNORE_INDEX, tokenize_examples

        if not prompts:
            return None
        examples, _ = tokenize_examples(
            self.tokenizer, prompts, answers, max_length=1 << 30, system_prompt=system_prompt
        )
        rows = [{"input_ids": ids, "labels": labels} for ids, labels in zip(examples["input_ids"], examples["labels"])]
        collate = PaddingCollator(self.pad_id)
        total, count = 0.0, 0
        for start in range(0, len(rows), self.batch_size):
            batch = {k: v.to(self.device) for k, v in collate(rows[start : start + self.batch_size]).items()}
            labels = batch.pop("labels")
            # Prompt-learning models prepend virtual tokens to the outputs: the last positions are the input's.
            logits = self.model(**batch).logits[:, -labels.shape[1] :].float()
            targets = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
            total += torch.nn.functional.cross_entropy(
                logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
            ).item()
            count += int((targets != IGNORE_INDEX).sum())
        return float(torch.exp(torch.tensor(total / count))) if count else None

    def close(self) -> None:
        self.model = None
        gc.collect()
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
