"""What answers a request of ``ftassets serve``: one loaded model that streams a chat completion.

``TransformersEngine`` runs a merged model, a base, or an adapter on its base in this process, with the prompt encoded
by the same chat-template code as training and evaluation and generation ended by the same stop ids, so a greedy
answer is the one the evaluation recorded. ``LlamaCppEngine`` runs a GGUF export in llama.cpp (llama-cpp-python),
rendering the prompt with the chat template embedded in the file and stopping on its end-of-turn token. ``ApiEngine``
streams from an API model through the evaluation's own backend (its client, deployment and pricing), so the playground
shows an API model's answer and cost beside the local ones.

An engine is used by one thread at a time (the server runs every generation on one worker thread): neither a
transformers model nor a llama.cpp context is safe to share between concurrent generations.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Sampling:
    """What a request may set. ``temperature == 0`` is greedy decoding (the evaluation's setting)."""

    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass
class Completion:
    """The running account of one generation; ``finish_reason`` is set when it ends ("stop" or "length")."""

    prompt_tokens: int
    completion_tokens: int = 0
    finish_reason: str | None = None
    first_token_s: float | None = None
    seconds: float = 0.0
    cost_usd: float | None = None
    """What the call was billed, where the engine knows its price (an API model with pricing)."""


class PromptTooLong(ValueError):
    """The prompt and the requested completion do not fit the served context."""


class Engine:
    name: str
    context_length: int

    def prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        raise NotImplementedError

    def stream(
        self, messages: list[dict[str, str]], sampling: Sampling, completion: Completion
    ) -> Iterator[str]:  # pragma: no cover - an interface
        """Text pieces of the answer, in order; ``completion`` is updated as it goes and finished at the end."""
        raise NotImplementedError

    def check_fits(self, messages: list[dict[str, str]], max_tokens: int) -> int:
        """The prompt's token count, or ``PromptTooLong`` naming both counts and the context."""
        tokens = self.prompt_tokens(messages)
        if tokens >= self.context_length:
            raise PromptTooLong(
                f"the prompt is {tokens} tokens, over the served context of {self.context_length} tokens; shorten the "
                "messages"
            )
        if tokens + max_tokens > self.context_length:
            raise PromptTooLong(
                f"the prompt is {tokens} tokens and max_tokens is {max_tokens}: together over the served context "
                f"of {self.context_length} tokens; shorten the messages or ask for fewer tokens"
            )
        return tokens

    def close(self) -> None:  # noqa: B027 (a hook: an engine that holds nothing leaves it as it is)
        """Release the model."""


class TransformersEngine(Engine):
    """A transformers causal LM (already loaded, e.g. through ``backends.factory``) and its tokenizer."""

    def __init__(self, model, tokenizer, name: str, context_length: int | None = None) -> None:
        from ftassets.training.tokenize import stop_token_ids

        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        self.stop_ids = stop_token_ids(tokenizer, getattr(model, "generation_config", None))
        declared = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        self.context_length = int(context_length or declared or 2048)

    def _encode(self, messages: list[dict[str, str]]) -> list[int]:
        from ftassets.training.tokenize import encode_chats

        return encode_chats(self.tokenizer, [messages], add_generation_prompt=True)[0]

    def prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        return len(self._encode(messages))

    def stream(self, messages: list[dict[str, str]], sampling: Sampling, completion: Completion) -> Iterator[str]:
        import queue
        import threading

        import torch
        from transformers import GenerationConfig, TextStreamer

        ids = self._encode(messages)
        pieces: queue.Queue = queue.Queue()
        done = object()

        class _Pieces(TextStreamer):
            """transformers' own incremental decoding (whole words, no split characters), into a queue."""

            def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
                if text:
                    pieces.put(text)

        greedy = sampling.temperature == 0
        config = GenerationConfig(
            max_new_tokens=sampling.max_tokens,
            do_sample=not greedy,
            temperature=None if greedy else sampling.temperature,
            top_p=None if greedy else sampling.top_p,
            top_k=None if greedy else 0,
            num_beams=1,
            use_cache=True,
            eos_token_id=self.stop_ids,
            pad_token_id=self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.stop_ids[0],
            stop_strings=list(sampling.stop) or None,
        )
        generated: list[torch.Tensor] = []
        failure: list[BaseException] = []

        def run() -> None:
            try:
                if sampling.seed is not None:
                    torch.manual_seed(sampling.seed)
                with torch.inference_mode():
                    output = self.model.generate(
                        input_ids=torch.tensor([ids], device=self.model.device),
                        attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=self.model.device),
                        generation_config=config,
                        streamer=_Pieces(self.tokenizer, skip_prompt=True, skip_special_tokens=True),
                        tokenizer=self.tokenizer if sampling.stop else None,
                    )
                generated.append(output[0, len(ids) :])
            except BaseException as error:  # handed to the consumer below
                failure.append(error)
            finally:
                pieces.put(done)

        started = time.perf_counter()
        worker = threading.Thread(target=run, name="ftassets-serve-generate", daemon=True)
        worker.start()
        while (piece := pieces.get()) is not done:
            if completion.first_token_s is None:
                completion.first_token_s = time.perf_counter() - started
            yield piece
        worker.join()
        if failure:
            raise failure[0]
        tokens = generated[0].tolist()
        completion.completion_tokens = len(tokens)
        stopped = bool(tokens) and tokens[-1] in self.stop_ids
        completion.finish_reason = "length" if len(tokens) >= sampling.max_tokens and not stopped else "stop"
        completion.seconds = time.perf_counter() - started

    def close(self) -> None:
        self.model = None


class LlamaCppEngine(Engine):
    """A GGUF file in llama.cpp, its prompt rendered with the chat template the file carries."""

    def __init__(self, path: Path, name: str, context_length: int, threads: int) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        from ftassets.export.llama_runtime import load_llama

        self.path, self.name, self.context_length = Path(path), name, context_length
        self.llm = load_llama(self.path, n_ctx=context_length, threads=threads, logits_all=False)
        metadata = self.llm.metadata
        template = metadata.get("tokenizer.chat_template")
        if not template:
            raise ValueError(f"{self.path.name} carries no chat template (tokenizer.chat_template); export it again")

        def token(key: str) -> str:
            value = metadata.get(key)
            return self.llm.detokenize([int(value)], special=True).decode("utf-8", "replace") if value else ""

        self.formatter = Jinja2ChatFormatter(
            template, eos_token=token("tokenizer.ggml.eos_token_id"), bos_token=token("tokenizer.ggml.bos_token_id")
        )

    def _render(self, messages: list[dict[str, str]]):
        return self.formatter(messages=messages)

    def _encode(self, messages: list[dict[str, str]]) -> list[int]:
        return self.llm.tokenize(self._render(messages).prompt.encode("utf-8"), add_bos=False, special=True)

    def prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        return len(self._encode(messages))

    def stream(self, messages: list[dict[str, str]], sampling: Sampling, completion: Completion) -> Iterator[str]:
        rendered = self._render(messages)
        stops = [*(rendered.stop if isinstance(rendered.stop, list) else [rendered.stop] if rendered.stop else [])]
        started = time.perf_counter()
        chunks = self.llm.create_completion(
            self._encode(messages),
            max_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=0 if sampling.temperature > 0 else 40,
            stop=[*stops, *sampling.stop],
            seed=sampling.seed,
            stream=True,
        )
        text = []
        for chunk in chunks:
            choice = chunk["choices"][0]
            if choice["text"]:
                if completion.first_token_s is None:
                    completion.first_token_s = time.perf_counter() - started
                text.append(choice["text"])
                yield choice["text"]
            if choice.get("finish_reason"):
                completion.finish_reason = choice["finish_reason"]
        # The stream's pieces are not tokens (llama-cpp-python holds some back while it checks stop strings):
        # the answer's own tokenization counts them.
        answer = "".join(text).encode("utf-8")
        completion.completion_tokens = len(self.llm.tokenize(answer, add_bos=False, special=False)) if answer else 0
        completion.finish_reason = completion.finish_reason or "stop"
        completion.seconds = time.perf_counter() - started

    def close(self) -> None:
        self.llm.close()


class ApiEngine(Engine):
    """An API model (``OpenAICompatibleBackend``, Azure's included) answering one conversation at a time, streamed.

    A reasoning model (GPT-5 family) takes no ``temperature``/``top_p``: its request keeps the backend's own
    parameters (reasoning budget, effort), and only ``max_tokens`` and ``stop`` apply."""

    def __init__(self, backend, name: str, context_length: int = 128_000) -> None:
        self.backend, self.name, self.context_length = backend, name, context_length

    def prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        return 0

    def check_fits(self, messages: list[dict[str, str]], max_tokens: int) -> int:
        return 0

    def stream(self, messages: list[dict[str, str]], sampling: Sampling, completion: Completion) -> Iterator[str]:
        from ftassets.backends.openai_compatible import BackendError

        params = self.backend.request_params(sampling.max_tokens)
        if not self.backend.reasoning_model:
            params.update(temperature=sampling.temperature, top_p=sampling.top_p)
        if sampling.stop:
            params["stop"] = list(sampling.stop)
        if sampling.seed is not None:
            params["seed"] = sampling.seed
        started = time.perf_counter()
        try:
            chunks = self.backend.client.chat.completions.create(
                model=self.backend.model,
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
                **params,
            )
            usage = None
            for chunk in chunks:
                usage = chunk.usage or usage
                for choice in chunk.choices:
                    if choice.delta and choice.delta.content:
                        if completion.first_token_s is None:
                            completion.first_token_s = time.perf_counter() - started
                        yield choice.delta.content
                    completion.finish_reason = choice.finish_reason or completion.finish_reason
        except Exception as error:
            raise BackendError(f"{self.name}: {error}") from None
        generation = self.backend.generation("", time.perf_counter() - started, usage, completion.first_token_s)
        completion.prompt_tokens = generation.prompt_tokens
        completion.completion_tokens = generation.completion_tokens
        completion.cost_usd = generation.cost_usd
        completion.finish_reason = completion.finish_reason or "stop"
        completion.seconds = generation.latency_s

    def close(self) -> None:
        self.backend.close()


EngineFactory = Callable[[], Engine]
