"""A loopback stand-in for an Azure ML workspace, beside ``azure_openai.py``'s Azure OpenAI fake, driven by the real
``azure-ai-ml`` ``MLClient`` over real HTTP; its default datastore is an Azurite container, so uploads and
downloads are real blob transfers.

It speaks the ARM routes (``/subscriptions/.../Microsoft.MachineLearningServices/workspaces/{ws}/...``) that
MLClient calls, with Azure's JSON shapes:

- the workspace (its ``discoveryUrl`` points back here, for the run-history and data-plane routes);
- datastores: the default ``workspaceblobstore`` (account key from ``listSecrets``) in Azurite;
- code versions (``startPendingUpload`` hands out a SAS URI of the Azurite container) and data versions;
- jobs: PUT / GET / cancel. A command job walks Queued -> Running -> Completed (or Failed) while the fake
  really runs it: it downloads the code snapshot and the inputs from blob, runs the job's command with
  bash in the snapshot (``python`` is this interpreter; ``pip`` is a no-op, the "environment" already has
  ftassets' dependencies) once per process of the job's PyTorch distribution, with Azure ML's
  ``RANK`` / ``LOCAL_RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR`` / ``MASTER_PORT`` and the job's
  environment variables (the Dagster Pipes bootstrap among them), then uploads the named outputs to
  ``azureml/{job}/{output}/`` where ``jobs.download`` finds them (run history + ``batchGetResolvedURIs``);
- fine-tuning jobs (``jobType: FineTuning``): Queued -> Running -> Completed, registering the output model;
- serverless endpoints: PUT (long-running) / GET / DELETE / ``listKeys``, and the endpoint's own
  chat-completions route (``{url}/serverless/{name}/chat/completions``, ``Authorization: Bearer <key>``),
  answered by the test's ``responder``.

One substitution the SDK forces: azure-ai-ml builds a datastore's URL as ``https://{account}.blob.{suffix}``
(``STORAGE_ACCOUNT_URLS``), which cannot name Azurite's path-style loopback account;
``route_datastores_to_azurite`` points that template at Azurite for the test's duration.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from fakes.loopback import LoopbackServer, RecordingHandler

REPO = Path(__file__).resolve().parents[2]
AZURITE = REPO / ".tools" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
"""Azurite's documented development-account key (public; it only opens the local emulator)."""
DATASTORE = "workspaceblobstore"
WORKSPACE_PATH = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.MachineLearningServices/"
    r"workspaces/(?P<ws>[^/]+)(?P<rest>/.*)?$"
)
DATAPLANE_PATH = re.compile(
    r"^/(?P<service>history|data)/v1\.0/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
    r"Microsoft\.MachineLearningServices/workspaces/[^/]+/(?P<rest>.*)$"
)
ASSET_PATH = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.MachineLearningServices/"
    r"workspaces/[^/]+/(?P<kind>codes|data|models)/(?P<name>[^/]+)/versions/(?P<version>[^/]+)$"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def azurite(location: Path) -> Iterator[str]:
    """Azurite's blob service on a free loopback port (telemetry off); yields the account URL (path style)."""
    port = free_port()
    process = subprocess.Popen(
        [
            str(AZURITE),
            "--silent",
            "--location",
            str(location),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--loose",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError as error:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"azurite did not start: {process.stderr.read().decode()[-2000:]}") from error
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/{DEV_ACCOUNT}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def account_sas_url(account_url: str, hours: float = 2.0) -> str:
    """The account URL with an account SAS (blob service, container + object): what a job gets to reach Pipes."""
    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

    sas = generate_account_sas(
        DEV_ACCOUNT,
        DEV_KEY,
        ResourceTypes(service=True, container=True, object=True),
        AccountSasPermissions(read=True, write=True, delete=True, list=True, add=True, create=True),
        expiry=datetime.now(UTC) + timedelta(hours=hours),
    )
    return f"{account_url}?{sas}"


@contextlib.contextmanager
def route_datastores_to_azurite(account_url: str) -> Iterator[None]:
    from azure.ai.ml._artifacts import _artifact_utilities

    templates = _artifact_utilities.STORAGE_ACCOUNT_URLS
    saved = dict(templates)
    templates["AzureBlob"] = account_url.rstrip("/").rsplit("/", 1)[0] + "/{}"
    try:
        yield
    finally:
        templates.clear()
        templates.update(saved)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class FakeAzureMLState:
    token: str
    location: str = "eastus"
    workspace_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    container: str = "azureml-blobstore-ftassets"
    codes: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    data: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    models: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    job_bodies: dict[str, dict[str, Any]] = field(default_factory=dict)
    statuses: dict[str, list[str]] = field(default_factory=dict)
    job_logs: dict[str, str] = field(default_factory=dict)
    job_polls: dict[str, int] = field(default_factory=dict)
    serverless: dict[str, dict[str, Any]] = field(default_factory=dict)
    serverless_keys: dict[str, dict[str, str]] = field(default_factory=dict)
    deleted_endpoints: list[str] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    fail_finetuning: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeAzureML(LoopbackServer):
    """``with FakeAzureML(azurite_url) as fake:`` serves on ``fake.url``; ``fake.cloud_metadata`` is the custom
    cloud MLClient needs to reach it."""

    thread_name = "fake-azureml"

    def __init__(
        self,
        azurite_url: str,
        *,
        token: str = "fake-arm-token",
        workspace_dir: Path | None = None,
        responder: Callable[[str, list[dict[str, str]]], str] | None = None,
        job_environment: dict[str, str] | None = None,
        job_timeout_s: float = 300.0,
    ) -> None:
        self.azurite_url = azurite_url.rstrip("/")
        self.state = FakeAzureMLState(token=token)
        self.responder = responder or (lambda model, messages: "ok")
        self.job_environment = dict(job_environment or {})
        self.job_timeout_s = job_timeout_s
        self.workspace_dir = Path(workspace_dir or tempfile.mkdtemp(prefix="fake-azureml-"))
        self._runners: list[threading.Thread] = []

    def container_client(self, container: str | None = None):
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient(
            self.azurite_url, credential={"account_name": DEV_ACCOUNT, "account_key": DEV_KEY}
        ).get_container_client(container or self.state.container)

    def __enter__(self) -> FakeAzureML:
        container = self.container_client()
        if not container.exists():
            container.create_container()
        self.serve(_Handler)
        return self

    def __exit__(self, *exc_info) -> None:
        for runner in self._runners:
            runner.join(timeout=30)
        self.stop()

    def wait_for_jobs(self, timeout_s: float = 120.0) -> None:
        for runner in self._runners:
            runner.join(timeout=timeout_s)

    # ---- running a command job the way Azure ML would, on this machine
    def _start(self, name: str) -> None:
        runner = threading.Thread(target=self._run_job, args=(name,), name=f"fake-azureml-job-{name}", daemon=True)
        self._runners.append(runner)
        runner.start()

    def _set_status(self, name: str, status: str, **properties: Any) -> None:
        with self.state.lock:
            job = self.state.jobs[name]
            job["properties"].update(status=status, **properties)
            self.state.statuses[name].append(status)

    def _run_job(self, name: str) -> None:
        try:
            log = self._execute(name)
        except Exception as error:  # the job fails, as on Azure, with the reason in its log
            self.state.job_logs[name] = self.state.job_logs.get(name, "") + f"\n{type(error).__name__}: {error}"
            self._set_status(name, "Failed")
            return
        self.state.job_logs[name] = log[0]
        self._set_status(name, "Completed" if log[1] == 0 else "Failed")

    def _execute(self, name: str) -> tuple[str, int]:
        properties = self.state.job_bodies[name]["properties"]
        root = self.workspace_dir / name
        code_dir, inputs_dir, outputs_dir = root / "code", root / "inputs", root / "outputs"
        time.sleep(0.3)
        self._set_status(name, "Preparing")
        code = self._asset(properties["codeId"])
        self._download(code["properties"]["codeUri"], code_dir)
        paths: dict[str, str] = {}
        for input_name, spec in (properties.get("inputs") or {}).items():
            target = inputs_dir / input_name
            self._download(spec["uri"], target)
            if spec.get("jobInputType") == "uri_file":
                files = [p for p in target.rglob("*") if p.is_file()]
                target = files[0] if len(files) == 1 else target
            paths[f"inputs.{input_name}"] = str(target)
        for output_name in properties.get("outputs") or {}:
            (outputs_dir / output_name).mkdir(parents=True, exist_ok=True)
            paths[f"outputs.{output_name}"] = str(outputs_dir / output_name)
        command = re.sub(r"\$\{\{\s*([\w.]+)\s*\}\}", lambda m: shlex.quote(paths[m.group(1)]), properties["command"])
        shims = root / "bin"
        shims.mkdir(parents=True, exist_ok=True)
        (shims / "python").write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
        (shims / "pip").write_text(
            "#!/bin/sh\necho 'fake Azure ML environment: dependencies preinstalled, skipping pip' >&2\n"
        )
        for shim in shims.iterdir():
            shim.chmod(0o755)
        distribution = properties.get("distribution") or {}
        per_instance = int(distribution.get("processCountPerInstance") or 1)
        instances = int((properties.get("resources") or {}).get("instanceCount") or 1)
        world, port = per_instance * instances, free_port()
        base_env = {
            **os.environ,
            **self.job_environment,
            **(properties.get("environmentVariables") or {}),
            "PATH": f"{shims}:{os.environ.get('PATH', '')}",
            "AZUREML_RUN_ID": name,
            "AZUREML_ARM_WORKSPACE_NAME": "ws",
        }
        self._set_status(name, "Running")
        processes = []
        for rank in range(world):
            env = dict(base_env)
            if distribution.get("distributionType") == "PyTorch":
                env.update(
                    RANK=str(rank),
                    LOCAL_RANK=str(rank % per_instance),
                    NODE_RANK=str(rank // per_instance),
                    WORLD_SIZE=str(world),
                    LOCAL_WORLD_SIZE=str(per_instance),
                    MASTER_ADDR="127.0.0.1",
                    MASTER_PORT=str(port),
                )
            log_file = open(root / f"std_log_process_{rank}.txt", "w")
            processes.append(
                (
                    subprocess.Popen(
                        ["bash", "-c", command], cwd=code_dir, env=env, stdout=log_file, stderr=subprocess.STDOUT
                    ),
                    log_file,
                )
            )
        deadline = time.monotonic() + self.job_timeout_s
        codes = []
        for process, log_file in processes:
            try:
                codes.append(process.wait(timeout=max(deadline - time.monotonic(), 1)))
            except subprocess.TimeoutExpired:
                process.kill()
                codes.append(process.wait())
            log_file.close()
        logs = "\n".join((root / f"std_log_process_{rank}.txt").read_text() for rank in range(world))
        if any(codes):
            return logs, max(codes)
        for output_name in properties.get("outputs") or {}:
            self._upload(outputs_dir / output_name, f"azureml/{name}/{output_name}")
        return logs, 0

    def _asset(self, arm_id: str) -> dict[str, Any]:
        match = ASSET_PATH.match(arm_id)
        if match is None:
            raise ValueError(f"not an asset version id: {arm_id}")
        store = {"codes": self.state.codes, "data": self.state.data, "models": self.state.models}[match["kind"]]
        return store[(match["name"], match["version"])]

    def locate(self, uri: str) -> tuple[str, str]:
        """(container, path) of an ``azureml://...datastores/x/paths/...`` URI or a blob URL."""
        if "/paths/" in uri:
            return self.state.container, uri.split("/paths/", 1)[1]
        path = unquote(urlparse(uri).path).lstrip("/")
        if path.startswith(DEV_ACCOUNT + "/"):
            path = path[len(DEV_ACCOUNT) + 1 :]
        container, _, rest = path.partition("/")
        return container, rest

    def _download(self, uri: str, target: Path) -> None:
        name, prefix = self.locate(uri)
        prefix = prefix.rstrip("/")
        container = self.container_client(name)
        found = False
        for blob in container.list_blobs(name_starts_with=prefix):
            relative = blob.name[len(prefix) :].lstrip("/") or Path(blob.name).name
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(container.download_blob(blob.name).readall())
            found = True
        if not found:
            raise FileNotFoundError(f"nothing in {name} under {prefix!r} ({uri})")

    def _upload(self, source: Path, prefix: str) -> None:
        container = self.container_client()
        for path in sorted(source.rglob("*")):
            if path.is_file():
                with open(path, "rb") as handle:
                    container.upload_blob(f"{prefix}/{path.relative_to(source).as_posix()}", handle, overwrite=True)

    def add_catalog_endpoint(self, name: str, model_id: str) -> tuple[str, str]:
        """A serverless endpoint of a catalog model that exists before the test (not ftassets'):
        (inference URL, key)."""
        key = f"sk-{uuid.uuid4().hex}"
        with self.state.lock:
            self.state.serverless[name] = {
                "id": f"/serverlessEndpoints/{name}",
                "name": name,
                "location": self.state.location,
                "tags": {},
                "sku": {"name": "Consumption"},
                "properties": {
                    "modelSettings": {"modelId": model_id},
                    "provisioningState": "Succeeded",
                    "inferenceEndpoint": {"uri": f"{self.url}/serverless/{name}"},
                },
            }
            self.state.serverless_keys[name] = {"primaryKey": key, "secondaryKey": f"sk-{uuid.uuid4().hex}"}
        return f"{self.url}/serverless/{name}", key


class _Handler(RecordingHandler):
    fake: FakeAzureML

    def route(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        if path == "/discovery":
            return self._send(
                200,
                {
                    key: self.fake.url
                    for key in (
                        "api",
                        "catalog",
                        "experimentation",
                        "gallery",
                        "history",
                        "hyperdrive",
                        "labeling",
                        "modelmanagement",
                        "pipelines",
                        "studiotrace",
                    )
                },
            )
        if m := re.fullmatch(r"/serverless/([^/]+)/(?:v1/)?chat/completions", path):
            return self._inference(m.group(1), json.loads(body or b"{}"))
        if self.headers.get("Authorization") != f"Bearer {self.state.token}":
            return self._send(401, {"error": {"code": "AuthenticationFailed", "message": "Authentication failed."}})
        if m := DATAPLANE_PATH.match(path):
            return self._dataplane(m["service"], m["rest"], json.loads(body or b"{}"))
        if "api-version" not in query:
            return self._send(
                400, {"error": {"code": "MissingApiVersionParameter", "message": "api-version is required"}}
            )
        if m := WORKSPACE_PATH.match(path):
            return self._workspace(method, m, m["rest"] or "", query, json.loads(body) if body else None)
        return self._unknown(method, path)

    def _unknown(self, method: str, path: str) -> None:
        self.state.unknown.append(f"{method} {path}")
        return self._send(
            404, {"error": {"code": "NotFound", "message": f"fake Azure ML has no route {method} {path}"}}
        )

    # ---- the workspace and its datastores
    def _prefix(self, m: re.Match) -> str:
        return (
            f"/subscriptions/{m['sub']}/resourceGroups/{m['rg']}/providers/Microsoft.MachineLearningServices/"
            f"workspaces/{m['ws']}"
        )

    def _datastore(self, m: re.Match) -> dict[str, Any]:
        return {
            "id": f"{self._prefix(m)}/datastores/{DATASTORE}",
            "name": DATASTORE,
            "type": "Microsoft.MachineLearningServices/workspaces/datastores",
            "properties": {
                "datastoreType": "AzureBlob",
                "accountName": DEV_ACCOUNT,
                "containerName": self.state.container,
                "endpoint": "core.windows.net",
                "protocol": "https",
                "isDefault": True,
                "credentials": {"credentialsType": "AccountKey"},
                "serviceDataAccessAuthIdentity": "None",
            },
        }

    def _workspace(self, method: str, m: re.Match, rest: str, query: dict[str, str], payload: Any) -> None:
        state, prefix = self.state, self._prefix(m)
        if rest == "":
            return self._send(
                200,
                {
                    "id": prefix,
                    "name": m["ws"],
                    "type": "Microsoft.MachineLearningServices/workspaces",
                    "location": state.location,
                    "kind": "Default",
                    "identity": {"type": "SystemAssigned"},
                    "sku": {"name": "Basic", "tier": "Basic"},
                    "properties": {
                        "discoveryUrl": f"{self.fake.url}/discovery",
                        "workspaceId": state.workspace_id,
                        "friendlyName": m["ws"],
                        "provisioningState": "Succeeded",
                        "mlFlowTrackingUri": f"azureml://{state.location}.api.azureml.ms/mlflow/v1.0{prefix}",
                    },
                },
            )
        if rest == "/datastores" and method == "GET":
            return self._send(200, {"value": [self._datastore(m)]})
        if rest == f"/datastores/{DATASTORE}" and method == "GET":
            return self._send(200, self._datastore(m))
        if rest == f"/datastores/{DATASTORE}/listSecrets" and method == "POST":
            return self._send(200, {"secretsType": "AccountKey", "key": DEV_KEY})
        if am := re.fullmatch(r"/(codes|data|models)/([^/]+)/versions(?:/([^/]+))?(/startPendingUpload)?", rest):
            return self._asset_version(
                method, prefix, am.group(1), am.group(2), am.group(3), bool(am.group(4)), payload
            )
        if am := re.fullmatch(r"/(codes|data|models)/([^/]+)", rest):
            return self._send(200, {"id": f"{prefix}{rest}", "name": am.group(2), "properties": {"latestVersion": "1"}})
        if jm := re.fullmatch(r"/jobs/([^/]+)(/cancel)?", rest):
            return self._job(method, prefix, jm.group(1), bool(jm.group(2)), payload)
        if sm := re.fullmatch(r"/serverlessEndpoints(?:/([^/]+))?(/listKeys)?", rest):
            return self._serverless(method, prefix, sm.group(1), bool(sm.group(2)), payload)
        if om := re.fullmatch(r"/operations/([^/]+)", rest):
            return self._send(200, {"status": "Succeeded", "name": om.group(1)})
        return self._unknown(method, rest)

    def _asset_version(
        self, method: str, prefix: str, kind: str, name: str, version: str | None, pending: bool, payload: Any
    ) -> None:
        store = {"codes": self.state.codes, "data": self.state.data, "models": self.state.models}[kind]
        if version is None:
            return self._send(200, {"value": [v for (n, _), v in store.items() if n == name]})
        if pending:
            container = uuid.uuid4().hex
            self.fake.container_client(container).create_container()
            sas = account_sas_url(self.fake.azurite_url).split("?", 1)[1]
            return self._send(
                200,
                {
                    "pendingUploadId": uuid.uuid4().hex,
                    "pendingUploadType": "TemporaryBlobReference",
                    "blobReferenceForConsumption": {
                        "blobUri": f"https://{DEV_ACCOUNT}.blob.core.windows.net/{container}",
                        "storageAccountArmId": (
                            "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/x"
                        ),
                        "credential": {"credentialType": "SAS", "sasUri": f"{self.fake.azurite_url}/{container}?{sas}"},
                    },
                },
            )
        resource_id = f"{prefix}/{kind}/{name}/versions/{version}"
        if method == "PUT":
            resource = {
                "id": resource_id,
                "name": version,
                "type": f"Microsoft.MachineLearningServices/workspaces/{kind}/versions",
                "properties": {**payload["properties"], "provisioningState": "Succeeded"},
                "systemData": {"createdAt": _now(), "createdBy": "ftassets-tests"},
            }
            store[(name, version)] = resource
            return self._send(201, resource)
        if (name, version) not in store:
            return self._send(404, {"error": {"code": "UserError", "message": f"{kind} {name}:{version} not found"}})
        return self._send(200, store[(name, version)])

    # ---- jobs
    def _job(self, method: str, prefix: str, name: str, cancel: bool, payload: Any) -> None:
        state = self.state
        if method == "PUT":
            properties = payload["properties"]
            job_type = properties.get("jobType")
            if job_type == "Command":
                problems = [
                    f"{key} missing"
                    for key in ("command", "codeId", "environmentId", "computeId")
                    if not properties.get(key)
                ]
                if problems:
                    return self._send(400, {"error": {"code": "UserError", "message": "; ".join(problems)}})
            elif job_type != "FineTuning":
                return self._send(
                    400, {"error": {"code": "UserError", "message": f"job type {job_type!r} not supported here"}}
                )
            with state.lock:
                state.job_bodies[name] = json.loads(json.dumps(payload))
                state.jobs[name] = {
                    "id": f"{prefix}/jobs/{name}",
                    "name": name,
                    "type": "Microsoft.MachineLearningServices/workspaces/jobs",
                    "properties": {
                        **properties,
                        "status": "Queued",
                        "services": {
                            "Studio": {"endpoint": f"https://ml.azure.com/runs/{name}", "jobServiceType": "Studio"}
                        },
                        "outputs": {**(properties.get("outputs") or {})},
                    },
                    "systemData": {"createdAt": _now(), "createdBy": "ftassets-tests"},
                }
                state.statuses[name], state.job_polls[name] = ["Queued"], 0
            if job_type == "Command":
                self.fake._start(name)
            return self._send(201, state.jobs[name])
        if name not in state.jobs:
            return self._send(404, {"error": {"code": "UserError", "message": f"job {name} not found"}})
        if cancel:
            if state.jobs[name]["properties"]["status"] not in ("Completed", "Failed", "Canceled"):
                self.fake._set_status(name, "Canceled")
            return self._send_bytes(
                202,
                b"",
                "application/json",
                {"Location": f"{self.fake.url}{prefix}/operations/cancel-{name}?api-version=1"},
            )
        if state.jobs[name]["properties"].get("jobType") == "FineTuning":
            self._advance_finetuning(prefix, name)
        return self._send(200, state.jobs[name])

    def _advance_finetuning(self, prefix: str, name: str) -> None:
        """Successive GETs walk a fine-tuning job Queued -> Running -> Completed, registering its model."""
        state = self.state
        with state.lock:
            job = state.jobs[name]["properties"]
            if job["status"] in ("Completed", "Failed", "Canceled"):
                return
            state.job_polls[name] += 1
            walk = ("Queued", "Running", "Running", "Completed")
            status = walk[min(state.job_polls[name], len(walk) - 1)]
            if status == "Completed" and state.fail_finetuning:
                status = "Failed"
            if status == job["status"]:
                return
            job["status"] = status
            state.statuses[name].append(status)
            if status != "Completed":
                return
            output = (job.get("outputs") or {}).get("registered_model") or {}
            model_name = output.get("assetName") or f"{name}-model"
            model_id = f"{prefix}/models/{model_name}/versions/1"
            details = job.get("fineTuningDetails") or {}
            state.models[(model_name, "1")] = {
                "id": model_id,
                "name": "1",
                "properties": {
                    "modelType": "custom_model",
                    "jobName": name,
                    "flavors": {},
                    "modelUri": f"azureml://jobs/{name}/outputs/registered_model",
                    "properties": {"baseModel": (details.get("model") or {}).get("uri", "")},
                },
            }
            uri = f"azureml://locations/{state.location}/workspaces/{state.workspace_id}/models/{model_name}/versions/1"
            job["outputs"] = {
                "registered_model": {**output, "jobOutputType": "mlflow_model", "assetName": model_name, "uri": uri}
            }

    # ---- run history and the data plane (what jobs.download asks)
    def _dataplane(self, service: str, rest: str, payload: dict[str, Any]) -> None:
        state = self.state
        if service == "history" and rest == "rundata":
            name = payload.get("runId")
            if name not in state.jobs:
                return self._send(404, {"error": {"code": "UserError", "message": f"run {name} not found"}})
            body = state.job_bodies[name]["properties"]
            outputs = {
                output: {"assetId": self._output_asset_id(name, output), "type": "UriFolder"}
                for output in (body.get("outputs") or {})
            }
            return self._send(
                200,
                {
                    "runMetadata": {
                        "runId": name,
                        "runUuid": str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
                        "status": state.jobs[name]["properties"]["status"],
                        "outputs": outputs,
                    }
                },
            )
        if service == "data" and rest == "dataversion/batchGetResolvedURIs":
            values = {}
            for asset_id in payload.get("values", []):
                m = re.search(r"/data/azureml_(?P<job>.+)_output_data_(?P<output>[^/]+)/versions/1$", asset_id)
                if m:
                    values[asset_id] = {
                        "uri": f"azureml://datastores/{DATASTORE}/paths/azureml/{m['job']}/{m['output']}/",
                        "type": "UriFolder",
                    }
            return self._send(200, {"values": values})
        return self._unknown("POST", f"/{service}/v1.0/.../{rest}")

    def _output_asset_id(self, job: str, output: str) -> str:
        return (
            f"azureml://locations/{self.state.location}/workspaces/{self.state.workspace_id}/data/"
            f"azureml_{job}_output_data_{output}/versions/1"
        )

    # ---- serverless endpoints
    def _serverless(self, method: str, prefix: str, name: str | None, keys: bool, payload: Any) -> None:
        state = self.state
        if name is None:
            return self._send(200, {"value": list(state.serverless.values())})
        if method == "PUT":
            model_id = ((payload.get("properties") or {}).get("modelSettings") or {}).get("modelId", "")
            known = {m["id"] for m in state.models.values()} | {
                f"azureml://locations/{state.location}/workspaces/{state.workspace_id}/models/{name_}/versions/{version}"
                for name_, version in state.models
            }
            if not model_id.startswith("azureml://registries/") and model_id not in known:
                return self._send(
                    400, {"error": {"code": "UserError", "message": f"model {model_id!r} not found in the workspace"}}
                )
            resource = {
                "id": f"{prefix}/serverlessEndpoints/{name}",
                "name": name,
                "location": state.location,
                "type": "Microsoft.MachineLearningServices/workspaces/serverlessEndpoints",
                "sku": payload.get("sku") or {"name": "Consumption"},
                "tags": payload.get("tags") or {},
                "properties": {
                    **payload["properties"],
                    "provisioningState": "Succeeded",
                    "inferenceEndpoint": {"uri": f"{self.fake.url}/serverless/{name}"},
                    "endpointState": "Online",
                },
                "systemData": {"createdAt": _now(), "createdBy": "ftassets-tests"},
            }
            with state.lock:
                state.serverless[name] = resource
                state.serverless_keys[name] = {
                    "primaryKey": f"sk-{uuid.uuid4().hex}",
                    "secondaryKey": f"sk-{uuid.uuid4().hex}",
                }
            return self._send(
                201, resource, {"Azure-AsyncOperation": f"{self.fake.url}{prefix}/operations/se-{name}?api-version=1"}
            )
        if name not in state.serverless:
            if method == "DELETE":
                return self._send_bytes(204, b"", "application/json")
            return self._send(404, {"error": {"code": "UserError", "message": f"serverless endpoint {name} not found"}})
        if keys:
            return self._send(200, state.serverless_keys[name])
        if method == "DELETE":
            with state.lock:
                del state.serverless[name]
                state.serverless_keys.pop(name, None)
                state.deleted_endpoints.append(name)
            return self._send_bytes(
                202,
                b"",
                "application/json",
                {"Location": f"{self.fake.url}{prefix}/operations/delete-{name}?api-version=1"},
            )
        return self._send(200, state.serverless[name])

    def _inference(self, name: str, payload: dict[str, Any]) -> None:
        state = self.state
        endpoint = state.serverless.get(name)
        if endpoint is None:
            return self._send(404, {"error": {"code": "NotFound", "message": f"no endpoint {name}"}})
        auth = self.headers.get("Authorization", "").removeprefix("Bearer ") or self.headers.get("api-key", "")
        if auth not in state.serverless_keys[name].values():
            return self._send(401, {"error": {"code": "Unauthorized", "message": "invalid key"}})
        messages = payload["messages"]
        model = endpoint["properties"]["modelSettings"]["modelId"]
        answer = self.fake.responder(model, messages)
        prompt_tokens = sum(len(m["content"].split()) for m in messages) + 3 * len(messages)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(answer.split()),
            "total_tokens": prompt_tokens + len(answer.split()),
        }
        completion = {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "created": int(time.time()), "model": name}
        if payload.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            chunks = [
                {
                    **completion,
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": answer}, "finish_reason": None}],
                },
                {
                    **completion,
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                },
            ]
            if (payload.get("stream_options") or {}).get("include_usage"):
                chunks.append({**completion, "object": "chat.completion.chunk", "choices": [], "usage": usage})
            for chunk in chunks:
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            return
        return self._send(
            200,
            {
                **completion,
                "object": "chat.completion",
                "usage": usage,
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": answer}}],
            },
        )
