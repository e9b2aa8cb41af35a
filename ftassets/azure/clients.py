"""Clients of the real SDKs: ``openai`` for inference, files and fine-tuning jobs; ``azure-mgmt-cognitiveservices``
for deployments (the control plane). Entra ID goes through azure-identity.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from ftassets.azure.settings import ENTRA_SCOPE, management_variables
from ftassets.config.schemas import AzureFile
from ftassets.endpoints import ApiTarget, client_options, openai_compatible_client, require_variables


class StaticTokenCredential:
    """A bearer token acquired elsewhere (``az account get-access-token``, a CI's OIDC exchange), as an
    azure-core ``TokenCredential``; it is not refreshed, so it suits runs shorter than its lifetime."""

    def __init__(self, token: str, lifetime_s: int = 3600) -> None:
        self._token, self._expires_on = token, int(time.time()) + lifetime_s

    def get_token(self, *scopes: str, **kwargs: Any):
        from azure.core.credentials import AccessToken

        return AccessToken(self._token, self._expires_on)

    def get_token_info(self, *scopes: str, options: Any = None):
        from azure.core.credentials import AccessTokenInfo

        return AccessTokenInfo(self._token, self._expires_on)

    def __repr__(self) -> str:
        return "StaticTokenCredential(<hidden>)"


def azure_credential(token_env: str | None):
    """``$token_env`` as a static bearer token when set, else azure-identity's ``DefaultAzureCredential``
    (environment, workload identity, managed identity, Azure CLI, ...)."""
    if token_env and os.environ.get(token_env):
        return StaticTokenCredential(os.environ[token_env])
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def openai_client(target: ApiTarget):
    """An ``AzureOpenAI`` client for deployment routes, an ``OpenAI`` client for the v1 API and other servers.

    Retries (429, 5xx; honouring ``retry-after``) and timeouts are the client's own; a connection that cannot be
    made fails fast (``ftassets.endpoints.client_options``)."""
    from openai import AzureOpenAI, OpenAI

    if target.source == "openai_compatible":
        return openai_compatible_client(target)
    common = client_options(target)
    token_provider = None
    if target.auth == "entra_id":
        from azure.identity import get_bearer_token_provider

        token_provider = get_bearer_token_provider(azure_credential(target.ad_token_env), ENTRA_SCOPE)
    if target.api == "v1":
        return OpenAI(base_url=f"{target.url}/openai/v1/", api_key=target.secret or token_provider, **common)
    if token_provider is not None:
        return AzureOpenAI(
            azure_endpoint=target.url, api_version=target.api_version, azure_ad_token_provider=token_provider, **common
        )
    return AzureOpenAI(azure_endpoint=target.url, api_version=target.api_version, api_key=target.secret, **common)


@dataclass(frozen=True)
class AccountRef:
    """The Azure OpenAI resource whose deployments the control plane manages."""

    subscription_id: str
    resource_group: str
    account: str
    management_url: str

    @property
    def loopback(self) -> bool:
        return is_loopback(self.management_url)


def account_ref(azure: AzureFile) -> AccountRef:
    values = require_variables(
        management_variables(azure), "deploying or deleting a fine-tuned model (configs/azure.yaml)"
    )
    return AccountRef(
        values[azure.subscription_id_env],
        values[azure.resource_group_env],
        values[azure.account_name_env],
        azure.management_url.rstrip("/"),
    )


def management_client(azure: AzureFile, account: AccountRef):
    from azure.mgmt.cognitiveservices import CognitiveServicesManagementClient

    credential = azure_credential(azure.management_token_env)
    return CognitiveServicesManagementClient(credential, account.subscription_id, base_url=account.management_url)


def call_options(account: AccountRef) -> dict[str, Any]:
    """azure-core refuses to send a bearer token over plain HTTP; an emulator on loopback is the one exception."""
    return {"enforce_https": False} if account.loopback else {}


PUBLIC_MANAGEMENT_URL = "https://management.azure.com"


def is_loopback(url: str) -> bool:
    return urlparse(url).hostname in ("127.0.0.1", "localhost", "::1")


def _plain_http_on_loopback():
    """A pipeline policy doing ``call_options`` for every call of a client: bearer tokens to a loopback emulator."""
    from azure.core.pipeline.policies import SansIOHTTPPolicy

    class PlainHttpOnLoopback(SansIOHTTPPolicy):
        def on_request(self, request: Any) -> None:
            request.context.options["enforce_https"] = False

    return PlainHttpOnLoopback()


def ml_client(azure: AzureFile, workspace: str, **kwargs: Any):
    """An azure-ai-ml ``MLClient`` of ``workspace`` (subscription and resource group from the environment).

    ``management_url`` other than the public ARM endpoint (a sovereign cloud, an emulator) is passed to MLClient as
    a custom cloud; its credential is ``$AZURE_MANAGEMENT_TOKEN`` when set, else DefaultAzureCredential."""
    from azure.ai.ml import MLClient

    values = require_variables(
        [azure.subscription_id_env, azure.resource_group_env], "the Azure ML workspace (configs/azure.yaml)"
    )
    url = azure.management_url.rstrip("/")
    if url != PUBLIC_MANAGEMENT_URL:
        cloud = "ftassets-" + urlparse(url).netloc.replace(":", "-").replace(".", "-")
        kwargs.update(
            cloud=cloud,
            cloud_metadata={
                "azure_portal": "https://portal.azure.com/",
                "resource_manager": url + "/",
                "active_directory": "https://login.microsoftonline.com/",
                "aml_resource_id": "https://ml.azure.com/",
                "storage_endpoint": "core.windows.net",
                "registry_discovery_endpoint": url + "/",
            },
        )
    if is_loopback(url):
        kwargs["per_call_policies"] = [_plain_http_on_loopback()]
    return MLClient(
        azure_credential(azure.management_token_env),
        values[azure.subscription_id_env],
        values[azure.resource_group_env],
        workspace,
        show_progress=False,
        **kwargs,
    )


def blob_service(url: str, credential: Any = None):
    """A ``BlobServiceClient`` of an account URL; one carrying a SAS token (``...?sv=...&sig=...``) needs no
    other credential."""
    from azure.storage.blob import BlobServiceClient

    if urlparse(url).query:
        return BlobServiceClient(url)
    return BlobServiceClient(url, credential=credential if credential is not None else azure_credential(None))
