"""Rows written by a teacher LLM: any Azure OpenAI or OpenAI-compatible base of ``configs/models.yaml``.

Each request asks for ``rows_per_request`` rows of the task type as one JSON object ``{"rows": [...]}``, with the
versioned prompt of ``PROMPTS[task type][prompt_version]`` and a few examples drawn from the user's seed rows.
Every row is validated by the task type (and the label set for classification); invalid rows and rows that
repeat a seed row or an earlier row (case, whitespace and punctuation aside) are dropped and counted by reason.
Generation stops when ``count`` rows are valid, before a request that could take the cost past ``budget_usd``
(the dearest request so far, or for the first one its prompt estimate plus the full answer allowance), or at
``max_requests``.

Request n is a pure function of n (its few-shot draw and sampling seed come from n), and each answer is kept in
``cache_dir/<sha256 of the request>.json``: a rerun replays the same requests from the cache and pays nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftassets.azure.clients import openai_client
from ftassets.azure.settings import required_variables, resolve_base
from ftassets.config import ConfigError, ProjectConfig, ResolvedTask
from ftassets.config.schemas import API_SOURCES
from ftassets.config.sources import TeacherSource
from ftassets.data.datasets import normalized
from ftassets.endpoints import ApiTarget
from ftassets.tasks import TaskType, get_task_type

REASONING_BUDGET_TOKENS = 2048
CHARS_PER_TOKEN_ESTIMATE = 3


class TeacherError(RuntimeError):
    """The teacher's endpoint could not be reached or refused a request; the message names base, URL and fix."""


@dataclass(frozen=True)
class GenerationPrompt:
    """One version of what a teacher is asked for a task type: the JSON keys of a row and what each holds."""

    keys: tuple[str, ...]
    row: str
    """What one row is; may name ``{labels}`` and ``{schema}``."""
    tokens_per_row: int
    """The answer allowance per row (``max_tokens`` = rows_per_request x this)."""
    check: Callable[[dict[str, Any]], str | None] = lambda record: None
    """A problem beyond the task type's own validation, or None."""
    turns: tuple[str, ...] = ()
    """Keys holding a list of ``{"role", "content"}`` turns instead of text."""


def _answer_in_context(record: dict[str, Any]) -> str | None:
    return None if record["answer"] in record["context"] else "answer is not a span of the context"


def _query_runs(record: dict[str, Any]) -> str | None:
    from ftassets.tasks.sql import connect_schema, run_query

    connection = connect_schema()
    try:
        return None if run_query(connection, record["query"]) is not None else "query does not run on the schema"
    finally:
        connection.close()


SYSTEM_PROMPTS = {
    "v1": (
        "You write training data for fine-tuning a small language model. Reply with one JSON object "
        '{"rows": [...]} and nothing else: no prose, no code fence.'
    )
}

USER_PROMPTS = {
    "v1": (
        "{task}Write {n} new rows. A row is a JSON object with exactly the keys {keys}: {row}\n"
        "Vary topic, length and wording; every row must differ from the others{and_examples}.{examples}\n"
        'Reply with {{"rows": [...]}} holding {n} rows.'
    )
}

PROMPTS: dict[str, dict[str, GenerationPrompt]] = {
    "classification": {
        "v1": GenerationPrompt(
            keys=("text", "label"),
            row='"text" is a short, realistic text to classify and "label" is exactly one of {labels}. Spread the '
            "rows evenly over the labels and include some hard cases (subtle or mixed wording).",
            tokens_per_row=80,
        )
    },
    "instruction": {
        "v1": GenerationPrompt(
            keys=("instruction", "input", "output"),
            row='"instruction" tells an assistant what to do, "input" is the text it works on, and "output" is the '
            "correct, concise answer.",
            tokens_per_row=200,
        )
    },
    "qa": {
        "v1": GenerationPrompt(
            keys=("context", "question", "answer"),
            row='"context" is a short paragraph of facts, "question" asks about one of them, and "answer" is the '
            "shortest span copied exactly from the context that answers it.",
            tokens_per_row=200,
            check=_answer_in_context,
        )
    },
    "summarization": {
        "v1": GenerationPrompt(
            keys=("document", "summary"),
            row='"document" is a news-style paragraph of 4 to 8 sentences and "summary" is one sentence that states '
            "its key facts.",
            tokens_per_row=300,
        )
    },
    "chat": {
        "v1": GenerationPrompt(
            keys=("messages",),
            row='"messages" is a conversation, a list of {{"role": "user" or "assistant", "content": text}} turns: '
            "one to three user turns, each answered by the assistant, ending with the assistant's answer.",
            tokens_per_row=300,
            turns=("messages",),
        )
    },
    "sql": {
        "v1": GenerationPrompt(
            keys=("question", "query"),
            row='"question" asks something about the data in these SQLite tables and "query" is one SQLite SELECT '
            "statement that answers it:\n{schema}",
            tokens_per_row=150,
            check=_query_runs,
        )
    },
}


@dataclass
class TeacherResult:
    """Valid, distinct records of the task type (each with ``_origin`` ``teacher:<request>:<item>``), what they
    cost, and why generation stopped."""

    rows: list[dict[str, Any]]
    usage: dict[str, Any]
    prompt_version: str
    stopped_because: str
    teacher: dict[str, Any] = field(default_factory=dict)
    """Base, endpoint and model that wrote the rows (never the key), for the manifest."""

    def facts(self) -> dict[str, Any]:
        return {
            "teacher": self.teacher,
            "prompt_version": self.prompt_version,
            "rows": len(self.rows),
            "stopped_because": self.stopped_because,
            "usage": self.usage,
        }


def prompt_for(task_type: str, version: str) -> GenerationPrompt:
    versions = PROMPTS.get(task_type)
    if versions is None:
        raise ConfigError(
            f"no teacher prompt for task type {task_type!r}; the teacher writes {', '.join(sorted(PROMPTS))} rows "
            "(add PROMPTS[type][version] in ftassets/data/sources/teacher.py for another)"
        )
    if version not in versions:
        raise ConfigError(
            f"teacher prompt_version {version!r} is unknown for task type {task_type!r}; known: {', '.join(versions)}"
        )
    return versions[version]


def generate_rows(
    project: ProjectConfig,
    task: ResolvedTask,
    teacher: TeacherSource,
    seed_rows: list[dict[str, Any]],
    cache_dir: Path,
    log: Callable[[str], None],
) -> TeacherResult:
    """Ask the teacher for ``teacher.count`` valid, distinct records of ``task``'s type within ``teacher.budget_usd``.

    ``seed_rows`` are records of the task type (the user's examples): few-shot material that nothing may repeat."""
    task_type = get_task_type(task.type)
    prompt = prompt_for(task.type, teacher.prompt_version)
    target = _teacher_target(project, teacher.base)
    context = _prompt_context(task, seed_rows)
    cache_dir.mkdir(parents=True, exist_ok=True)

    seen = {_dedup_key(task_type, task, row) for row in seed_rows}
    rows: list[dict[str, Any]] = []
    rejected: Counter[str] = Counter()
    usage = {"requests": 0, "cached_requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
    dearest, client, stopped_because = 0.0, None, "max_requests"
    try:
        for n in range(teacher.max_requests + 1):
            if len(rows) >= teacher.count:
                stopped_because = "count reached"
                break
            if n == teacher.max_requests:
                break
            request = _request(task, teacher, prompt, target, context, seed_rows, n)
            cache_path = cache_dir / f"{_request_hash(target, request, n)}.json"
            if cache_path.exists():
                response = json.loads(cache_path.read_text(encoding="utf-8"))["response"]
                usage["cached_requests"] += 1
            else:
                estimate = dearest or _first_estimate(target, request)
                if usage["cost_usd"] + estimate > teacher.budget_usd:
                    stopped_because = "budget"
                    log(
                        f"teacher {teacher.base}: stopping before request {n}: ${usage['cost_usd']:.4f} spent + "
                        f"${estimate:.4f} estimated would exceed the budget of ${teacher.budget_usd:g}"
                    )
                    break
                client = client or openai_client(target)
                response = _complete(client, project, teacher.base, target, request)
                _write_atomically(cache_path, {"request": request, "response": response})
                cost = _cost(target, response.get("usage") or {})
                dearest = max(dearest, cost)
                usage["prompt_tokens"] += (response.get("usage") or {}).get("prompt_tokens") or 0
                usage["completion_tokens"] += (response.get("usage") or {}).get("completion_tokens") or 0
                usage["cost_usd"] += cost
            usage["requests"] += 1
            items = _items(response)
            if items is None:
                rejected["response is not a JSON object with a rows list"] += 1
                log(f"teacher {teacher.base}: request {n} answered no JSON rows; asking again")
                continue
            for m, item in enumerate(items):
                record, problem = _record(task_type, task, prompt, context, item, seen)
                if problem:
                    rejected[problem] += 1
                elif len(rows) < teacher.count:
                    seen.add(_dedup_key(task_type, task, record))
                    rows.append({**record, "_origin": f"teacher:{n}:{m}"})
            log(
                f"teacher {teacher.base}: request {n}: {len(rows)}/{teacher.count} rows, ${usage['cost_usd']:.4f} spent"
            )
    finally:
        if client is not None:
            client.close()
    usage["cost_usd"] = round(usage["cost_usd"], 6)
    usage["rejected_items"] = dict(sorted(rejected.items()))
    return TeacherResult(
        rows=rows,
        usage=usage,
        prompt_version=teacher.prompt_version,
        stopped_because=stopped_because,
        teacher={"base": teacher.base, **target.describe()},
    )


def _teacher_target(project: ProjectConfig, base: str) -> ApiTarget:
    config = project.bases.get(base)
    api_bases = sorted(name for name, entry in project.bases.items() if entry.source in API_SOURCES)
    if config is None or config.source not in API_SOURCES:
        what = "is not a base" if config is None else f"is a {config.source} base"
        raise ConfigError(
            f"teacher base {base!r} {what}; a teacher is a base of models.yaml whose source is azure_openai or "
            f"openai_compatible (configured: {', '.join(api_bases) or 'none'})"
        )
    target = resolve_base(project, base)
    if target.pricing is None:
        where = (
            f"bases.{base}.pricing in models.yaml"
            if config.source == "openai_compatible"
            else f"pricing for {target.model!r} in azure.yaml"
        )
        raise ConfigError(
            f"teacher base {base!r} has no price, so its budget cannot be kept; add {where} "
            "(input_per_1m, output_per_1m, as_of; 0 for a free local server)"
        )
    return target


def _prompt_context(task: ResolvedTask, seed_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The values a prompt may name: the classification label set (and its aliases) and the SQL schema."""
    context: dict[str, Any] = {}
    if task.type == "classification":
        from ftassets.tasks.classification import LABELS

        declared = getattr(task.config, "labels", None) or task.config.params.get("labels")
        context["labels"] = list(declared or dict.fromkeys(row["label"] for row in seed_rows) or LABELS)
        context["aliases"] = dict(task.config.params.get("aliases") or {})
    if task.type == "sql":
        from ftassets.tasks.sql import schema_text

        context["schema"] = next((row["schema"] for row in seed_rows if row.get("schema")), None) or schema_text()
    return context


def _request(
    task: ResolvedTask,
    teacher: TeacherSource,
    prompt: GenerationPrompt,
    target: ApiTarget,
    context: dict[str, Any],
    seed_rows: list[dict[str, Any]],
    n: int,
) -> dict[str, Any]:
    """Request n: messages and sampling parameters, a function of n alone (so a rerun asks the same)."""
    rng = random.Random(f"{task.config.seed}:{teacher.prompt_version}:{n}")
    shots = rng.sample(seed_rows, min(teacher.few_shot, len(seed_rows)))
    examples = "".join(
        "\n" + json.dumps({key: row[key] for key in prompt.keys if key in row}, ensure_ascii=False) for row in shots
    )
    user = USER_PROMPTS[_generation(teacher.prompt_version)].format(
        task=f"The task: {task.config.description}\n" if task.config.description else "",
        n=teacher.rows_per_request,
        keys=", ".join(f'"{key}"' for key in prompt.keys),
        row=prompt.row.format(
            labels=", ".join(f'"{label}"' for label in context.get("labels", ())), schema=context.get("schema", "")
        ),
        and_examples=" and from these examples" if shots else "",
        examples=f"\nExamples:{examples}" if shots else "",
    )
    messages = [
        {"role": "system", "content": SYSTEM_PROMPTS[_generation(teacher.prompt_version)]},
        {"role": "user", "content": user},
    ]
    answer_tokens = teacher.rows_per_request * prompt.tokens_per_row
    if target.reasoning_model:
        params: dict[str, Any] = {"max_completion_tokens": answer_tokens + REASONING_BUDGET_TOKENS}
        if target.reasoning_effort:
            params["reasoning_effort"] = target.reasoning_effort
        if target.verbosity:
            params["verbosity"] = target.verbosity
    else:
        params = {"temperature": teacher.temperature, "max_tokens": answer_tokens, "seed": rng.randrange(2**31)}
    return {"messages": messages, **params}


def _generation(version: str) -> str:
    """The system and user wording a prompt version uses (versions without their own share v1's)."""
    return version if version in USER_PROMPTS else "v1"


def _request_hash(target: ApiTarget, request: dict[str, Any], n: int) -> str:
    key = {"model": target.model, "deployment": target.deployment, "request_index": n, **request}
    return hashlib.sha256(json.dumps(key, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _first_estimate(target: ApiTarget, request: dict[str, Any]) -> float:
    """The dearest the first request can be: its prompt (about 3 characters a token) and the full answer allowance."""
    prompt_tokens = math.ceil(sum(len(m["content"]) for m in request["messages"]) / CHARS_PER_TOKEN_ESTIMATE)
    answer_tokens = request.get("max_tokens") or request.get("max_completion_tokens") or 0
    return target.pricing.cost(prompt_tokens, 0, answer_tokens)


def _cost(target: ApiTarget, usage: dict[str, Any]) -> float:
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return target.pricing.cost(usage.get("prompt_tokens") or 0, cached, usage.get("completion_tokens") or 0)


def _complete(client: Any, project: ProjectConfig, base: str, target: ApiTarget, request: dict) -> dict[str, Any]:
    """One chat completion as JSON; the client retries 429, 5xx and connection errors (honouring retry-after)."""
    import openai

    variables = ", ".join(f"${name}" for name in required_variables(project, base)) or "its configuration"
    try:
        response = client.chat.completions.create(model=target.deployment, **request)
    except openai.APIConnectionError as error:
        raise TeacherError(
            f"teacher base {base!r}: cannot reach {target.url} ({error.__cause__ or error}) after "
            f"{target.max_retries} retries; check that the server is running and that {variables} points at it"
        ) from None
    except openai.APIStatusError as error:
        hints = {
            401: f"check the key ({variables})",
            403: f"check the key and its access to {target.deployment!r} ({variables})",
            404: f"check the model or deployment name {target.deployment!r} and the URL ({variables})",
            429: f"still rate limited after {target.max_retries} retries; raise max_retries or try later",
        }
        hint = hints.get(error.status_code, "the endpoint refused the request; see its message")
        raise TeacherError(
            f"teacher base {base!r} at {target.url} answered {error.status_code}: {error.message}; {hint}"
        ) from None
    return response.model_dump(mode="json")


def _write_atomically(path: Path, payload: dict[str, Any]) -> None:
    handle, staging = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        json.dump(payload, file, ensure_ascii=False)
    os.replace(staging, path)


def _items(response: dict[str, Any]) -> list[Any] | None:
    """The ``rows`` list of the answer (a code fence or prose around the object tolerated), or None."""
    choices = response.get("choices") or [{}]
    text = ((choices[0].get("message") or {}).get("content") or "").strip()
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        parsed = json.loads(text[start : end + 1])
    except json.JSONDecodeError:
        return None
    rows = parsed.get("rows") if isinstance(parsed, dict) else None
    return rows if isinstance(rows, list) else None


def _record(
    task_type: TaskType,
    task: ResolvedTask,
    prompt: GenerationPrompt,
    context: dict[str, Any],
    item: Any,
    seen: set[str],
) -> tuple[dict[str, Any], str | None]:
    """One answered item as a record of the task type, or the reason it is dropped."""
    if not isinstance(item, dict):
        return {}, "item is not a JSON object"
    record: dict[str, Any] = {}
    for key in prompt.keys:
        value = item.get(key)
        if key in prompt.turns:
            if not isinstance(value, list) or not all(isinstance(turn, dict) for turn in value):
                return {}, f"field {key!r} is not a list of turns"
            record[key] = [{"role": turn.get("role"), "content": turn.get("content")} for turn in value]
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if value is not None and not isinstance(value, str):
            return {}, f"field {key!r} is not text"
        record[key] = value.strip() if value is not None else None
    if "schema" in context:
        record["schema"] = context["schema"]
    if "labels" in context and record.get("label"):
        phrase = " ".join(record["label"].lower().split())
        names = {" ".join(name.lower().split()): label for name, label in context["aliases"].items()}
        label = (names | {" ".join(label.lower().split()): label for label in context["labels"]}).get(phrase)
        if label is None:
            return {}, f"label not one of {context['labels']}"
        record["label"] = label
    if problems := task_type.validate_record(record):
        return {}, problems[0]
    if problem := prompt.check(record):
        return {}, problem
    if _dedup_key(task_type, task, record) in seen:
        return {}, "duplicate of a seed row or an earlier row"
    return record, None


def _dedup_key(task_type: TaskType, task: ResolvedTask, record: dict[str, Any]) -> str:
    """The record's rendered prompt with case, whitespace and punctuation ignored."""
    return normalized(task_type.render_prompt(record, task.prompt_template))
