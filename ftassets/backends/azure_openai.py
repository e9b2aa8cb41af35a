"""Azure OpenAI deployments (GPT-5, GPT-5 mini, GPT-5 nano, fine-tuned gpt-4.1-mini, ...) as a model backend.

The request rules (the GPT-5 family gets ``max_completion_tokens``, ``reasoning_effort`` and ``verbosity``, never
``temperature`` or ``max_tokens``), streaming, usage with cached and reasoning tokens, and bounded concurrency
are ``OpenAICompatibleBackend``'s; this class adds Azure's routing (deployments with ``api-version``, or the
v1 API), its authentication (an API key from an env var, or Entra ID), and the deployment's price.
"""

from __future__ import annotations

from typing import Any

from ftassets.azure.clients import openai_client
from ftassets.backends.openai_compatible import OpenAICompatibleBackend
from ftassets.endpoints import ApiTarget


class AzureOpenAIBackend(OpenAICompatibleBackend):
    def __init__(self, target: ApiTarget, *, name: str, client: Any = None, **kwargs: Any) -> None:
        self.target = target
        super().__init__(
            client or openai_client(target),
            target.deployment,
            name=name,
            reasoning_model=target.reasoning_model,
            reasoning_effort=target.reasoning_effort,
            verbosity=target.verbosity,
            concurrency=target.concurrency,
            pricing=target.pricing,
            url_from=target.url_from,
            **kwargs,
        )
