"""API endpoints any provider serves: the target an OpenAI-compatible base resolves to (vLLM, Ollama, llama.cpp's
server, an Azure AI serverless endpoint), the environment variables it reads, and its client. Azure OpenAI's own
resolution (deployments, Entra ID, API versions) builds on this in ``ftassets/azure/settings.py``.

Missing variables are reported all at once, by name, before any request is made. An endpoint that cannot be
connected to (refused, unknown host, no answer within ``CONNECT_TIMEOUT_S``) fails in seconds: the connection is
tried ``CONNECT_RETRIES`` more times (httpx's own connection retries: at once, then 0.5 s later), then the request
fails with ``EndpointUnreachable``, which the openai client passes on as it is, without its own retries (those,
with their backoff, stay for answers: 429, 5xx, a timeout while reading).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import httpx2
from openai import APIConnectionError

from ftassets.config import ConfigError
from ftassets.config.schemas import OpenAICompatibleBase, TokenPricing

REASONING_MODEL_PREFIXES = ("gpt-5", "o1", "o3", "o4")
CONNECT_RETRIES = 2
CONNECT_TIMEOUT_S = 10.0


class MissingCredentials(ConfigError):
    """An API partition was asked for while the environment variables it needs are unset."""


@dataclass(frozen=True)
class ApiTarget:
    """Everything needed to call one API model; ``secret`` is the key (or None for Entra ID / no key)."""

    base: str
    source: str
    url: str
    model: str
    deployment: str
    api: str
    api_version: str | None
    auth: str
    reasoning_model: bool
    reasoning_effort: str | None
    verbosity: str | None
    concurrency: int
    timeout_s: float
    max_retries: int
    pricing: TokenPricing | None
    ad_token_env: str | None = None
    url_from: str | None = None
    """Where ``url`` comes from, for messages: ``$VAR (configs/... field)``."""
    secret: str | None = field(default=None, repr=False)

    def describe(self) -> dict[str, Any]:
        """What a manifest or metadata may show: where and what, never the key."""
        return {
            "source": self.source,
            "endpoint": self.url,
            "deployment": self.deployment,
            "model": self.model,
            "api": self.api,
            "api_version": self.api_version,
            "auth": self.auth,
            "reasoning_model": self.reasoning_model,
            "reasoning_effort": self.reasoning_effort,
            "verbosity": self.verbosity,
            "pricing": self.pricing.model_dump(mode="json") if self.pricing else None,
        }


def is_reasoning_model(model: str) -> bool:
    return model.lower().startswith(REASONING_MODEL_PREFIXES)


def require_variables(names: list[str], what: str) -> dict[str, str]:
    missing = [name for name in names if not os.environ.get(name)]
    if missing:
        raise MissingCredentials(
            f"{what} needs {', '.join('$' + name for name in missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not set; export {'it' if len(missing) == 1 else 'them'} "
            "(the names are configured in configs/azure.yaml or configs/models.yaml) and run again"
        )
    return {name: os.environ[name] for name in names}


def openai_compatible_target(
    base: str, config: OpenAICompatibleBase, values: dict[str, str], deployment: str | None = None
) -> ApiTarget:
    """The target of an OpenAI-compatible base, from its ``values`` (the variables ``base_url_env`` and
    ``api_key_env`` name, already checked to be set)."""
    return ApiTarget(
        base=base,
        source=config.source,
        url=values[config.base_url_env],
        model=config.model,
        deployment=deployment or config.model,
        api="v1",
        api_version=None,
        auth="api_key" if config.api_key_env else "none",
        reasoning_model=config.reasoning_model or is_reasoning_model(config.model),
        reasoning_effort=config.reasoning_effort,
        verbosity=config.verbosity,
        concurrency=config.concurrency,
        timeout_s=config.timeout_s,
        max_retries=config.max_retries,
        pricing=config.pricing,
        url_from=f"${config.base_url_env} (configs/models.yaml bases.{base}.base_url_env)",
        secret=values.get(config.api_key_env) if config.api_key_env else None,
    )


def openai_compatible_client(target: ApiTarget):
    """An ``OpenAI`` client for any server of the v1 API; retries (429, 5xx; honouring ``retry-after``) and
    timeouts are the client's own, a connection that cannot be made fails fast (``client_options``)."""
    from openai import OpenAI

    return OpenAI(base_url=target.url, api_key=target.secret or "not-needed", **client_options(target))


class EndpointUnreachable(APIConnectionError):
    """No connection to the endpoint after ``CONNECT_RETRIES`` retries; the message says why and for how long."""


class _FailFastTransport(httpx2.HTTPTransport):
    def __init__(self) -> None:
        super().__init__(retries=CONNECT_RETRIES)

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            return super().handle_request(request)
        except (httpx2.ConnectError, httpx2.ConnectTimeout) as error:
            timeout = (request.extensions.get("timeout") or {}).get("connect")
            reason = str(error) or f"no connection within {timeout:g} s"
            raise EndpointUnreachable(
                message=f"cannot connect to {request.url.scheme}://{request.url.netloc.decode()} ({reason}; "
                f"{CONNECT_RETRIES + 1} attempts, connect timeout {timeout:g} s)",
                request=request,
            ) from error


def client_options(target: ApiTarget) -> dict[str, Any]:
    """Keyword arguments of an openai client for ``target``: its timeout and retries (those answers earn), a connect
    timeout of at most ``CONNECT_TIMEOUT_S`` and an HTTP client that fails fast where no connection can be made."""
    from openai import DefaultHttpx2Client

    return dict(
        timeout=httpx2.Timeout(target.timeout_s, connect=min(target.timeout_s, CONNECT_TIMEOUT_S)),
        max_retries=target.max_retries,
        http_client=DefaultHttpx2Client(transport=_FailFastTransport()),
    )
