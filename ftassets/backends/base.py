"""The one interface every model backend implements: chat conversations in, greedy texts out.

Local transformers models, OpenAI-compatible HTTP servers, Azure OpenAI deployments and llama.cpp
servers are each one ``ModelBackend`` subclass, so evaluation compares them with the same code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True)
class Generation:
    text: str
    latency_s: float
    prompt_tokens: int
    completion_tokens: int
    first_token_s: float | None = None
    """Seconds until the first token arrived, where the backend streams."""
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    """Part of ``completion_tokens`` that a reasoning model spent thinking (billed as output)."""
    cost_usd: float | None = None
    """What the call cost, where the backend knows its price (API backends with a pricing table)."""


class ModelBackend(ABC):
    name: str

    @abstractmethod
    def generate(self, conversations: list[list[dict[str, str]]], max_new_tokens: int) -> list[Generation]:
        """One greedy ``Generation`` per conversation, in input order."""

    def perplexity(self, prompts: list[str], answers: list[str], system_prompt: str | None = None) -> float | None:
        """Perplexity of the reference ``answers`` given their prompts, where the backend exposes token
        probabilities of a given text (local models); None where it cannot (chat APIs)."""
        return None

    def close(self) -> None:  # noqa: B027 (a hook: a backend that holds nothing leaves it as it is)
        """Release the model, connection or server process."""

    def __enter__(self) -> ModelBackend:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
