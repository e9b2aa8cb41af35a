"""The embedded default base model: a small Llama that the project trains itself, offline.

``build_embedded_model`` generates a generic English corpus, trains a byte-level BPE tokenizer on
it, pre-trains a ``LlamaForCausalLM`` with the transformers ``Trainer`` and saves model, tokenizer
and chat template with ``save_pretrained``. Fine-tuning tasks then start from this model as they
would from any hub checkpoint.

The tokenizer is GPT-2 style byte-level BPE (ByteLevel pre-tokenizer with GPT-2's regex, no
normalizer), the form llama.cpp exports as ``tokenizer.ggml.model="gpt2"``, ``pre="gpt-2"``.
``tokenizer_config.json`` names ``TokenizersBackend`` so that ``AutoTokenizer`` reloads the saved
``tokenizer.json`` as is, instead of picking ``LlamaTokenizer`` from ``model_type: llama`` and
replacing the pre-tokenizer. Input and output embeddings are tied: a quarter fewer parameters at
this size, and llama.cpp reads a Llama GGUF without ``output.weight`` from ``token_embd``.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import jinja2
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from torch import Tensor
from transformers import (
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
    set_seed,
)

from ftassets.models.corpus import generate_corpus

BOS_TOKEN = "<|endoftext|>"
TURN_START = "<|im_start|>"
EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|pad|>"
SPECIAL_TOKENS = (BOS_TOKEN, TURN_START, EOS_TOKEN, PAD_TOKEN)
K_QUANT_BLOCK = 256

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class EmbeddedSpec:
    """Architecture, corpus and pre-training settings of the embedded model.

    The defaults are the shipped model: about 45 s to build on two CPU cores. Measured at equal time, two layers
    with small batches and more steps beat deeper or wider-batch variants (four layers at batch 16 ended near 3.5).
    1100 pre-training steps instead of 550 (and everyday opinions in the corpus, ``corpus._opinion``) made the
    default fine-tunes land in the same place whatever the seed and thread count: from the 550-step base, LoRA on the
    classification task ended anywhere between 0.34 and 0.56 accuracy across three seeds and one or two threads
    (BENCHMARKS.md, "Stability"). Hidden and feed-forward widths are multiples of 256 so that GGUF K-quants apply to
    every matrix.
    ``opinions`` (on by default) adds everyday opinions to the corpus (``corpus._opinion``);
    ``polarity_words`` adds everyday sentences with "positive", "negative" and "neutral" to the corpus
    (``corpus._polarity``).
    """

    vocab_size: int = 2048
    hidden_size: int = 256
    intermediate_size: int = 768
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    max_position_embeddings: int = 512
    pretrain_steps: int = 1100
    pretrain_batch_size: int = 4
    pretrain_seq_length: int = 128
    learning_rate: float = 2e-3
    corpus_documents: int = 12000
    polarity_words: bool = False
    opinions: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        for name in ("hidden_size", "intermediate_size"):
            if getattr(self, name) % K_QUANT_BLOCK:
                problems.append(f"{name}={getattr(self, name)} is not a multiple of {K_QUANT_BLOCK}")
        if self.hidden_size % self.num_attention_heads:
            problems.append("hidden_size must be divisible by num_attention_heads")
        if self.num_attention_heads % self.num_key_value_heads:
            problems.append("num_attention_heads must be divisible by num_key_value_heads")
        if self.vocab_size <= 256 + len(SPECIAL_TOKENS):
            problems.append(f"vocab_size must exceed the 256 byte tokens plus {len(SPECIAL_TOKENS)} special tokens")
        if self.pretrain_seq_length > self.max_position_embeddings:
            problems.append("pretrain_seq_length must not exceed max_position_embeddings")
        for name in ("num_hidden_layers", "pretrain_steps", "pretrain_batch_size", "corpus_documents"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be positive")
        if self.learning_rate <= 0:
            problems.append("learning_rate must be positive")
        if problems:
            raise ValueError("invalid EmbeddedSpec: " + "; ".join(problems))


_COMPILED_CHAT_TEMPLATE = jinja2.Environment(trim_blocks=True, lstrip_blocks=True).from_string(CHAT_TEMPLATE)


def render_chat(messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
    """Render ``messages`` with ``CHAT_TEMPLATE`` as ``apply_chat_template`` does, without a tokenizer."""
    return _COMPILED_CHAT_TEMPLATE.render(messages=messages, add_generation_prompt=add_generation_prompt)


def train_tokenizer(corpus: list[str], spec: EmbeddedSpec) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``corpus`` and wrap it as a transformers tokenizer.

    Special tokens are left out of the training text so that no merges are spent on their pieces;
    they enter the vocabulary whole, with the first ids.
    """
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )

    def plain_text():
        for document in corpus:
            for token in SPECIAL_TOKENS:
                document = document.replace(token, "\n")
            yield document

    backend.train_from_iterator(plain_text(), trainer, length=len(corpus))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=spec.max_position_embeddings,
        clean_up_tokenization_spaces=False,
        padding_side="right",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def pack_blocks(corpus: list[str], tokenizer: PreTrainedTokenizerFast, seq_length: int) -> list[dict[str, Tensor]]:
    """Join the documents, each after a BOS separator, and cut the stream into full blocks."""
    stream = []
    for ids in tokenizer(corpus, add_special_tokens=False)["input_ids"]:
        stream += [tokenizer.bos_token_id, *ids]
    blocks = torch.tensor(stream[: len(stream) // seq_length * seq_length]).view(-1, seq_length)
    return [{"input_ids": block, "labels": block} for block in blocks]


class _LossLog(TrainerCallback):
    def __init__(self, log: Callable[[str], None]) -> None:
        self.log, self.losses = log, []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses.append((state.global_step, round(logs["loss"], 4)))
            self.log(f"pretrain step {state.global_step}/{state.max_steps}: loss {logs['loss']:.3f}")


def pretrain(
    model: LlamaForCausalLM, blocks: list[dict[str, Tensor]], spec: EmbeddedSpec, log: Callable[[str], None]
) -> list[tuple[int, float]]:
    """Train ``model`` in place as a causal LM on ``blocks``; return the logged (step, loss) pairs."""
    loss_log = _LossLog(log)
    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(
            output_dir=scratch,
            max_steps=spec.pretrain_steps,
            per_device_train_batch_size=spec.pretrain_batch_size,
            learning_rate=spec.learning_rate,
            lr_scheduler_type="cosine",
            warmup_steps=0.1,
            weight_decay=0.01,
            adam_beta2=0.98,
            max_grad_norm=1.0,
            logging_steps=max(1, spec.pretrain_steps // 6),
            logging_first_step=True,
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            use_cpu=True,
            seed=spec.seed,
            data_seed=spec.seed,
            dataloader_num_workers=0,
        )
        trainer = Trainer(
            model=model, args=args, train_dataset=blocks, data_collator=default_data_collator, callbacks=[loss_log]
        )
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    return loss_log.losses


def embedded_config(
    spec: EmbeddedSpec, vocab_size: int | None = None, config_class: type = LlamaConfig, **settings: Any
) -> LlamaConfig:
    """The embedded model's architecture: ``spec``'s shape with ``vocab_size`` tokens (the trained tokenizer's
    size; ``spec.vocab_size`` before it is trained). ``settings`` (token ids, ...) override or extend it, and
    ``config_class`` gives the same shape another Llama-layout family (the tests' Mistral)."""
    shape = dict(
        vocab_size=vocab_size or spec.vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
    )
    return config_class(**(shape | settings))


def build_embedded_model(
    out_dir: Path, spec: EmbeddedSpec = EmbeddedSpec(), log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Train the tokenizer, build and pre-train the model, save model, tokenizer and chat template
    into ``out_dir``; return a JSON-serialisable summary of what was built."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    log(f"building embedded model: {spec}")
    corpus = generate_corpus(
        spec.corpus_documents, spec.seed, render_chat, polarity_words=spec.polarity_words, opinions=spec.opinions
    )
    tokenizer = train_tokenizer(corpus, spec)
    log(f"tokenizer: {len(tokenizer)} tokens from {len(corpus)} documents")
    blocks = pack_blocks(corpus, tokenizer, spec.pretrain_seq_length)

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    config = embedded_config(
        spec, len(tokenizer), bos_token_id=ids[BOS_TOKEN], eos_token_id=ids[EOS_TOKEN], pad_token_id=ids[PAD_TOKEN]
    )
    set_seed(spec.seed)
    model = LlamaForCausalLM(config)
    parameters = sum(p.numel() for p in model.parameters())
    log(f"model: {parameters:,} parameters, {len(blocks)} blocks of {spec.pretrain_seq_length} tokens")
    losses = pretrain(model, blocks, spec, log)

    model.config.use_cache = True
    model.generation_config = GenerationConfig(
        bos_token_id=ids[BOS_TOKEN], eos_token_id=ids[EOS_TOKEN], pad_token_id=ids[PAD_TOKEN]
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    seconds = round(time.perf_counter() - started, 2)
    log(f"embedded model saved to {out_dir} in {seconds} s")
    summary: dict[str, Any] = {
        "architecture": type(model).__name__,
        "parameters": parameters,
        "tie_word_embeddings": config.tie_word_embeddings,
        "vocab_size": len(tokenizer),
        "special_tokens": {"bos": BOS_TOKEN, "eos": EOS_TOKEN, "pad": PAD_TOKEN, "turn_start": TURN_START},
        "special_token_ids": ids,
        "chat_template": CHAT_TEMPLATE,
        "pretrain_loss_first": losses[0][1],
        "pretrain_loss_last": losses[-1][1],
        "pretrain_losses": [list(step_loss) for step_loss in losses],
        "corpus_documents": len(corpus),
        "corpus_characters": sum(map(len, corpus)),
        "corpus_tokens": len(blocks) * spec.pretrain_seq_length,
        "pretrain_tokens": spec.pretrain_steps * spec.pretrain_batch_size * spec.pretrain_seq_length,
        "seconds": seconds,
        "spec": asdict(spec),
    }
    return summary
