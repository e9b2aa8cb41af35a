"""Conversations from the user's data: the model answers the final user turn with the whole conversation before it.

A record holds ``messages``, the conversation ending with the assistant's answer (the reference). The model is
shown the conversation up to the final user turn; training puts the loss on every assistant turn or only the last
(``params.loss_on``). There is no synthetic generator: a chat task needs a ``source``.
"""

from __future__ import annotations

import random
from typing import Any

from ftassets.tasks._scoring import generation_metric_problems, score_chosen_generations, whole_text, zero_metrics
from ftassets.tasks.base import Scored, TaskType

ROLES = ("system", "user", "assistant")
LOSS_ON = ("all_assistant_turns", "last_turn")


def prompt_turns(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The conversation the model answers: ``messages`` without a final assistant answer."""
    return messages[:-1] if messages and messages[-1].get("role") == "assistant" else list(messages)


def transcript(messages: list[dict[str, str]]) -> str:
    """One string for a conversation: a lone user turn's text, else ``Role: text`` lines."""
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    return "\n".join(f"{message['role'].capitalize()}: {message['content']}" for message in messages)


class ChatTask(TaskType):
    semantic_similarity = True
    name = "chat"
    fields = ("messages",)
    metric_names = ("rougeL", "bleu", "chrf", "token_f1", "parse_failures")
    default_primary_metric = "rougeL"
    default_prompt_template = "{messages}"
    """Unused: a conversation is shown to the model as chat turns; ``render_prompt`` gives its transcript."""
    default_max_new_tokens = 256
    allowed_params = frozenset({"metrics", "loss_on"})
    source_schemas = ("chat",)
    has_generator = False

    def configure(self) -> None:
        if "metrics" in self.params:
            self.metric_names = (*self.params["metrics"], "parse_failures")

    @property
    def loss_on(self) -> str:
        return self.params.get("loss_on", LOSS_ON[0])

    def validate_params(self, params: dict[str, Any]) -> list[str]:
        problems = super().validate_params(params) + generation_metric_problems(params, self.metric_names[:-1])
        if params.get("loss_on", LOSS_ON[0]) not in LOSS_ON:
            problems.append(f"loss_on must be one of {list(LOSS_ON)}, got {params['loss_on']!r}")
        return problems

    def generate(self, count: int, rng: random.Random, params: dict[str, Any]) -> list[dict[str, Any]]:
        raise ValueError(
            "task type 'chat' has no synthetic generator: a chat task needs a `source` with the conversations, e.g. "
            "source: {path: data/chats.jsonl, format: chat}"
        )

    def conversation(self, record: dict[str, Any]) -> list[dict[str, str]]:
        """The turns before the final assistant answer (what the chat template renders as the model's input)."""
        return prompt_turns(record["messages"])

    def reference(self, record: dict[str, Any]) -> str:
        """The final assistant turn (a stored row whose ``messages`` stop before it keeps it in ``answer``)."""
        messages = record["messages"]
        if messages and messages[-1].get("role") == "assistant":
            return messages[-1]["content"]
        return record.get("answer", "")

    def render_prompt(self, record: dict[str, Any], template: str) -> str:
        return transcript(self.conversation(record))

    def parse(self, text: str, record: dict[str, Any]) -> str | None:
        return whole_text(text)

    def score(self, records: list[dict[str, Any]], predictions: list[str]) -> Scored:
        parsed = [self.parse(text, record) for record, text in zip(records, predictions, strict=True)]
        if not records:
            return Scored(zero_metrics(self.metric_names), [])
        references = [self.reference(record).strip() for record in records]
        return Scored(*score_chosen_generations(parsed, references, self.metric_names))

    def rejected(self, record: dict[str, Any], rng: random.Random) -> str:
        """The row's own rejected answer, else an earlier assistant turn, else the final user turn echoed."""
        if stored := self.stored_rejected(record):
            return stored
        reference = self.reference(record)
        turns = self.conversation(record)
        earlier = [m["content"] for m in turns if m["role"] == "assistant" and m["content"] != reference]
        if earlier:
            return rng.choice(earlier)
        last_user = next(m["content"] for m in reversed(turns) if m["role"] == "user")
        return last_user if last_user != reference else f"{last_user} {last_user}"

    def validate_record(self, record: dict[str, Any]) -> list[str]:
        messages = record.get("messages")
        if not isinstance(messages, list) or not messages:
            return ["field 'messages' is missing or empty"]
        problems = []
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ROLES:
                problems.append(f"messages[{index}] needs a role from {list(ROLES)}, got {message!r}")
            elif not isinstance(message.get("content"), str) or not message["content"].strip():
                problems.append(f"messages[{index}] ({message['role']}) has no text content")
        if problems:
            return problems
        turns = self.conversation(record)
        if not turns or turns[-1]["role"] != "user":
            problems.append("the conversation must end with a user turn followed by the assistant's answer")
        if not self.reference(record).strip():
            problems.append("the conversation must end with the assistant's answer")
        return problems

    def record_from_source(self, row: dict[str, Any], schema: str, origin: str) -> dict[str, Any]:
        messages = row.get("messages")
        if not isinstance(messages, list):
            raise ValueError(f"{origin}: field 'messages' must be a list of turns, got {messages!r}")
        if messages and isinstance(messages[-1], dict) and messages[-1].get("role") != "assistant":
            raise ValueError(f"{origin}: field 'messages' must end with an assistant turn (the answer to learn)")
        return {
            "messages": [
                {"role": message.get("role"), "content": message.get("content")}
                if isinstance(message, dict)
                else message
                for message in messages
            ]
        }
