"""The playground's domain: which variants of a task can answer, their answers side by side, and where they disagree.

What a user picks is an *option*: one variant (``base``, ``finetuned``, ``gguf-<quant>``, or an API model) of a model
entry that was evaluated on the task. Each local option is resolved through the lineage exactly as ``ftassets serve``
resolves it (``resolve_variant``: the artifact of the latest materialization, checked current), and shown with its
data version; an option that cannot answer (stale, never built, an API model without credentials) is listed with the
reason and the command that fixes it, never silently dropped. Answers stream from every chosen option at once, each
with its latency, tokens and cost (an API model's billed price; a local model's seconds at the configured price of
its device per hour, as the evaluation costs it). A prompt taken from the test split is parsed and scored by the
task's own scorer, so its verdict is the evaluation's. The disagreements come from the evaluations' stored
per-example predictions, not from new generations.

Plain Python (no Gradio, no Dagster): ``playground_app`` draws it; ``runner`` is a ``PipelineRunner``.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ftassets.config.schemas import API_SOURCES
from ftassets.data.datasets import read_splits
from ftassets.defs.partitions import cell_key
from ftassets.evaluation.evaluate import local_cost_usd, scoring_type
from ftassets.evaluation.runs import load_evaluations
from ftassets.serving.engines import Completion, Engine, PromptTooLong, Sampling
from ftassets.serving.resolve import NotServable, ServedArtifact, build_command, load_engine, resolve_variant
from ftassets.training.tokenize import prompt_messages

OUTCOMES = ("all", "correct", "incorrect")


@dataclass(frozen=True)
class Option:
    """One variant a user may pick: ``key`` is what the UI shows (``<entry>/<variant>``, ``<base>/base``)."""

    key: str
    model: str
    variant: str
    data_version: str | None = None
    unavailable: str | None = None
    """Why it cannot answer now, with what to do; None when it can."""
    served: ServedArtifact | None = field(default=None, compare=False)

    @property
    def describe(self) -> str:
        if self.unavailable:
            return f"{self.key}: {self.unavailable}"
        version = f"data version {self.data_version[:12]}" if self.data_version else "API"
        stale = f", NOT CURRENT ({self.served.stale})" if self.served is not None and self.served.stale else ""
        return f"{self.key}: {version}{stale}"


@dataclass
class Answer:
    """One option's answer as it streams; ``done`` once it ended (with ``error`` set if it failed)."""

    key: str
    text: str = ""
    completion: Completion | None = None
    cost_usd: float | None = None
    error: str | None = None
    done: bool = False
    verdict: dict[str, Any] | None = None

    def stats(self) -> str:
        """Latency, tokens and cost, for the UI (and the tests)."""
        if self.error:
            return f"failed: {self.error}"
        if self.completion is None or not self.done:
            return "answering..." if self.text else "waiting..."
        c = self.completion
        first = f" (first token {c.first_token_s:.2f} s)" if c.first_token_s is not None else ""
        cost = "cost n/a" if self.cost_usd is None or self.cost_usd != self.cost_usd else f"${self.cost_usd:.6f}"
        line = f"{c.seconds:.2f} s{first} · {c.prompt_tokens} prompt + {c.completion_tokens} answer tokens · {cost}"
        if self.verdict is not None:
            correct = self.verdict["correct"]
            judged = ("correct" if correct >= 1 else "incorrect") if correct in (0.0, 1.0) else f"score {correct:.2f}"
            line += f" · {judged} (parsed: {self.verdict['parsed']})"
        return line


class Playground:
    def __init__(self, runner, device: str = "auto", allow_stale: bool = False, threads: int | None = None) -> None:
        self.runner, self.device, self.allow_stale, self.threads = runner, device, allow_stale, threads
        self.project, self.store = runner.project, runner.store
        self._engines: dict[tuple, tuple[Engine, threading.Lock]] = {}
        self._loading = threading.Lock()
        self._options: dict[str, list[Option]] = {}

    def tasks(self) -> list[str]:
        """Tasks with at least one evaluation recorded, the default experiment's first."""
        first = self.project.default_selection()[0]
        ordered = [*first, *(t for t in self.project.tasks if t not in first)]
        evaluated = self._evaluated_cells()
        return [t for t in ordered if any(str(cell_key(t, m)) in evaluated for m in self.project.models)]

    def _evaluated_cells(self) -> set[str]:
        import dagster as dg

        return set(self.runner.instance.get_materialized_partitions(dg.AssetKey("evaluation")))

    def _evaluations(self, task: str) -> dict:
        """The stored evaluations of ``task`` whose cells Dagster recorded as materialized, by model entry."""
        recorded = self._evaluated_cells()
        stored = load_evaluations(self.project, self.store, task)
        return {model: evaluation for model, evaluation in stored.items() if str(cell_key(task, model)) in recorded}

    def _key(self, model: str, variant: str) -> str:
        """What the UI calls a variant: ``<entry>/<variant>``, or ``<base>/base`` (one for the entries sharing it)."""
        return f"{self.project.base_of(model)}/base" if variant == "base" else f"{model}/{variant}"

    def options(self, task: str, refresh: bool = True) -> list[Option]:
        """Every variant of every entry evaluated on ``task``: the variants its evaluation scored, each resolved
        through the lineage now (``refresh``) or as last resolved."""
        if not refresh and task in self._options:
            return self._options[task]
        options: dict[str, Option] = {}
        for model, evaluation in self._evaluations(task).items():
            for variant in evaluation.table["variant"]:
                key = self._key(model, variant)
                if key not in options:
                    options[key] = self._option(task, model, variant, key)
        self._options[task] = list(options.values())
        return self._options[task]

    def _option(self, task: str, model: str, variant: str, key: str) -> Option:
        base = self.project.bases[self.project.base_of(model)]
        if base.source in API_SOURCES:
            try:
                self._api_backend(model)
            except Exception as error:
                return Option(key, model, variant, unavailable=str(error))
            return Option(key, model, variant)
        try:
            served = resolve_variant(self.runner, task, model, variant, allow_stale=self.allow_stale)
        except NotServable as error:
            return Option(key, model, variant, unavailable=str(error))
        return Option(key, model, variant, data_version=served.data_version, served=served)

    def _api_backend(self, model: str):
        from ftassets.backends.factory import backend_for_base

        base = self.project.base_of(model)
        settings = self.project.experiments.evaluation
        return backend_for_base(self.project, base, self.store.path("base_model", base), self.device, settings)

    def engine(self, option: Option) -> tuple[Engine, threading.Lock]:
        """The loaded engine of ``option`` (loaded once; options that share an artifact share it) and its lock."""
        from ftassets.serving.engines import ApiEngine

        if option.unavailable:
            raise NotServable(option.unavailable)
        identity = ("api", option.model) if option.served is None else (option.served.asset, str(option.served.path))
        with self._loading:
            if identity not in self._engines:
                if option.served is None:
                    engine = ApiEngine(self._api_backend(option.model), option.key)
                else:
                    engine = load_engine(self.runner, option.served, device=self.device, threads=self.threads)
                self._engines[identity] = (engine, threading.Lock())
            return self._engines[identity]

    def test_examples(self, task: str) -> list[dict[str, Any]]:
        """The test rows the evaluation scored (its ``max_test_examples`` first rows of the dataset's test split)."""
        if self.runner.recorded_version("dataset", task) is None:
            return []
        rows = read_splits(self.store.path("dataset", task))["test"]
        return rows[: self.project.experiments.evaluation.max_test_examples]

    def messages(self, task: str, prompt: str, example: dict[str, Any] | None = None) -> list[dict[str, str]]:
        """The conversation for ``prompt``: a test example's own (system prompt included) when the prompt is
        still that example's, else the prompt as one user turn after the task's system prompt."""
        system = self.project.tasks[task].config.system_prompt
        if example is not None and prompt == example["prompt"]:
            return prompt_messages(example, system)
        return prompt_messages({"prompt": prompt}, system)

    def verdict(self, task: str, example: dict[str, Any], text: str) -> dict[str, Any]:
        """The task scorer's verdict on ``text`` as an answer to the test ``example``: ``parsed`` and ``correct``."""
        judged = scoring_type(self.project.tasks[task], self.test_examples(task)).score([example], [text])
        entry = judged.per_example[0]
        return {"parsed": entry.get("parsed"), "correct": float(entry.get("correct", 0.0))}

    def answer(
        self,
        task: str,
        options: list[Option],
        prompt: str,
        sampling: Sampling,
        example: dict[str, Any] | None = None,
    ) -> Iterator[list[Answer]]:
        """Every option answers ``prompt`` at once; yields the answers as they grow, the last time all done."""
        messages = self.messages(task, prompt, example)
        answers = [Answer(option.key) for option in options]
        changed: queue.Queue = queue.Queue()

        def run(option: Option, answer: Answer) -> None:
            try:
                engine, lock = self.engine(option)
                with lock:
                    completion = Completion(prompt_tokens=engine.check_fits(messages, sampling.max_tokens))
                    answer.completion = completion
                    for piece in engine.stream(messages, sampling, completion):
                        answer.text += piece
                        changed.put(answer.key)
                device = getattr(getattr(engine, "model", None), "device", None)
                answer.cost_usd = completion.cost_usd
                if option.served is not None:
                    where = "cpu" if device is None else device.type
                    answer.cost_usd = local_cost_usd(completion.seconds, where, self.project.experiments.evaluation)
                if example is not None and prompt == example["prompt"]:
                    answer.verdict = self.verdict(task, example, answer.text)
            except (NotServable, PromptTooLong) as error:
                answer.error = str(error)
            except Exception as error:  # shown in its panel; the other options go on answering
                answer.error = f"{type(error).__name__}: {error}"
            finally:
                answer.done = True
                changed.put(answer.key)

        workers = [
            threading.Thread(target=run, args=(option, answer), name=f"playground-{answer.key}", daemon=True)
            for option, answer in zip(options, answers, strict=True)
        ]
        for worker in workers:
            worker.start()
        last = 0.0
        while not all(answer.done for answer in answers):
            try:
                changed.get(timeout=0.5)
            except queue.Empty:
                continue
            if time.perf_counter() - last > 0.1:
                last = time.perf_counter()
                yield answers
        for worker in workers:
            worker.join()
        yield answers

    def disagreements(self, task: str, variant: str | None = None, outcome: str = "all") -> pd.DataFrame:
        """Test examples on which the evaluated variants' parsed answers differ, one column per variant (its answer,
        marked correct or not), from the stored predictions; ``outcome`` keeps the rows where ``variant``'s answer
        was ``correct`` or ``incorrect``."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
        wide = self.predictions(task)
        if wide.empty:
            return wide
        keys = [c.removesuffix(":parsed") for c in wide.columns if c.endswith(":parsed")]
        differ = wide[[f"{k}:parsed" for k in keys]].nunique(axis=1, dropna=False) > 1
        rows = wide[differ]
        if variant and outcome != "all":
            if variant not in keys:
                raise ValueError(f"no evaluated variant {variant!r} on {task!r}; one of: {', '.join(keys)}")
            right = rows[f"{variant}:correct"] >= 0.5
            rows = rows[right if outcome == "correct" else ~right]
        shown = {"id": rows["id"], "prompt": rows["prompt"], "reference": rows["reference"]}
        for key in keys:
            mark = rows[f"{key}:correct"].map(lambda c: "✓" if c >= 0.5 else "✗")
            shown[key] = mark + " " + rows[f"{key}:prediction"].astype(str)
        return pd.DataFrame(shown).reset_index(drop=True)

    def predictions(self, task: str) -> pd.DataFrame:
        """The stored per-example predictions of every evaluated variant, one row per test example."""
        frames = []
        for model, evaluation in self._evaluations(task).items():
            frame = evaluation.predictions()
            frame["key"] = [self._key(model, variant) for variant in frame["variant"]]
            frames.append(frame)
        if not frames:
            return pd.DataFrame()
        long = pd.concat(frames, ignore_index=True).drop_duplicates(["key", "id"])
        wide = long.pivot(index="id", columns="key", values=["prediction", "parsed", "correct"])
        wide.columns = [f"{key}:{value}" for value, key in wide.columns]
        first = long.drop_duplicates("id").set_index("id")[["prompt", "reference"]]
        order = {example_id: i for i, example_id in enumerate(first.index)}
        joined = first.join(wide).reset_index()
        return joined.sort_values("id", key=lambda ids: ids.map(order)).reset_index(drop=True)

    def stale_evaluations(self, task: str) -> dict[str, str]:
        """Evaluations of ``task`` that are not current, with why (their disagreements may be out of date)."""
        found = {}
        for model in load_evaluations(self.project, self.store, task):
            why = self.runner.needs("evaluation", cell_key(task, model))
            if why is not None:
                found[model] = f"{why}; `{build_command(task, model)}`"
        return found

    def close(self) -> None:
        for engine, _ in self._engines.values():
            engine.close()
        self._engines.clear()


def parse_stop(text: str) -> tuple[str, ...]:
    """Stop strings typed as a JSON list (``["\\n\\n", "###"]``) or comma-separated."""
    text = text.strip()
    if not text:
        return ()
    if text.startswith("["):
        values = json.loads(text)
        if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
            raise ValueError("stop: a JSON list of non-empty strings")
        return tuple(values)
    return tuple(part.strip() for part in text.split(",") if part.strip())
