"""A loopback stand-in for Azure OpenAI and its control plane, driven by the real SDKs over real HTTP.

It speaks the routes the SDKs call, with Azure's JSON shapes:

- data plane, deployment routes (``/openai/deployments/{name}/chat/completions?api-version=``) and the v1 API
  (``/openai/v1/...``), authenticated by ``api-key`` or ``Authorization: Bearer``;
- files (multipart upload with ``purpose=fine-tune``, retrieve ``pending`` then ``processed``, content);
- fine-tuning jobs (create, list, retrieve, events, checkpoints, cancel), walking pending -> running ->
  succeeded on successive retrieves, with a ``results.csv`` result file;
- ARM deployments (PUT / GET / DELETE / list) under ``/subscriptions/.../Microsoft.CognitiveServices/...``;
  a deployed fine-tune becomes routable for chat completions.

GPT-5 models answer 400 ``unsupported_parameter`` to ``temperature``, ``max_tokens``, ``top_p`` and
``logprobs``; ``throttle(n)`` scripts n 429s with ``retry-after-ms``. Answers come from a ``responder``
the test passes (the model's behaviour is the test's to choose; the client code under test is real).
"""

from __future__ import annotations

import csv
import email.parser
import email.policy
import io
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fakes.loopback import LoopbackServer, RecordingHandler

REASONING_PREFIXES = ("gpt-5", "o1", "o3", "o4")
REJECTED_FOR_REASONING = ("temperature", "max_tokens", "top_p", "logprobs", "presence_penalty", "frequency_penalty")
FINE_TUNABLE = ("gpt-4o-mini-2024-07-18", "gpt-4.1-2025-04-14", "gpt-4.1-mini-2025-04-14", "gpt-4.1-nano-2025-04-14")
JOB_WALK = ("pending", "running", "running", "succeeded")
ARM_DEPLOYMENT = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.CognitiveServices/accounts/"
    r"(?P<account>[^/]+)/deployments(?:/(?P<name>[^/]+))?$"
)


def words(text: str) -> int:
    return len(text.split())


@dataclass
class FakeAzureState:
    api_key: str
    bearer_token: str
    management_token: str
    deployments: dict[str, str]
    responder: Callable[[str, list[dict[str, str]]], str]
    reasoning_tokens: int = 8
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    file_bytes: dict[str, bytes] = field(default_factory=dict)
    file_retrievals: dict[str, int] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    job_polls: dict[str, int] = field(default_factory=dict)
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    checkpoints: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    arm_deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    throttled: int = 0
    retry_after_ms: int = 20
    fail_jobs: bool = False
    refuse_deployments: bool = False
    seen_prompts: set[str] = field(default_factory=set)
    requests: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    chats_started: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeAzure(LoopbackServer):
    """``with FakeAzure(responder=...) as fake:`` serves on ``fake.url`` until the block ends."""

    thread_name = "fake-azure"

    def __init__(
        self,
        responder: Callable[[str, list[dict[str, str]]], str] | None = None,
        deployments: dict[str, str] | None = None,
        api_key: str = "fake-key-0123456789abcdef",
        bearer_token: str = "fake-entra-token",
        management_token: str = "fake-arm-token",
        chat_delay_s: float = 0.0,
        first_chat_waits_for: int = 1,
    ) -> None:
        self.state = FakeAzureState(
            api_key=api_key,
            bearer_token=bearer_token,
            management_token=management_token,
            deployments=dict(
                deployments
                or {
                    "gpt-5": "gpt-5",
                    "gpt-5-mini": "gpt-5-mini",
                    "gpt-5-nano": "gpt-5-nano",
                    "gpt-4.1-mini": "gpt-4.1-mini",
                }
            ),
            responder=responder or (lambda model, messages: "ok"),
        )
        self.chat_delay_s = chat_delay_s
        # The first chat completion is held (30 s at most) until this many are in flight, so that a concurrent
        # client is seen overlapping its requests however fast or slow the machine is.
        self.first_chat_waits_for = first_chat_waits_for
        self.enough_in_flight = threading.Event()

    def throttle(self, count: int, retry_after_ms: int = 20) -> None:
        with self.state.lock:
            self.state.throttled, self.state.retry_after_ms = count, retry_after_ms

    def __enter__(self) -> FakeAzure:
        self.serve(_Handler)
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


class _Handler(RecordingHandler):
    fake: FakeAzure
    request_id_header = "apim-request-id"

    def route(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        if match := ARM_DEPLOYMENT.match(path):
            return self._arm(method, match, query, body)
        data_path = re.sub(r"^/openai(/v1)?", "", path)
        v1 = path.startswith("/openai/v1/")
        if not path.startswith("/openai/"):
            return self._error(404, "NotFound", f"no route {path}")
        if not v1 and "api-version" not in query:
            return self._error(404, "404", "Resource not found: api-version query parameter missing")
        if not self._authorized():
            return self._error(401, "401", "Access denied due to invalid subscription key or wrong API endpoint.")
        if m := re.fullmatch(r"/deployments/([^/]+)/chat/completions", data_path):
            return self._chat(m.group(1), json.loads(body))
        if data_path == "/chat/completions" and v1:
            payload = json.loads(body)
            return self._chat(payload.get("model", ""), payload)
        return self._files_and_jobs(method, data_path, query, body)

    def _authorized(self) -> bool:
        key = self.headers.get("api-key")
        bearer = self.headers.get("Authorization", "")
        return key == self.state.api_key or bearer in (
            f"Bearer {self.state.bearer_token}",
            f"Bearer {self.state.api_key}",
        )

    # ---- chat completions
    def _chat(self, deployment: str, payload: dict[str, Any]) -> None:
        state = self.state
        model = state.deployments.get(deployment)
        if model is None:
            return self._error(
                404, "DeploymentNotFound", f"The API deployment for this resource does not exist: {deployment}"
            )
        with state.lock:
            if state.throttled > 0:
                state.throttled -= 1
                throttle = True
            else:
                throttle = False
        if throttle:
            return self._send(
                429,
                {
                    "error": {
                        "code": "429",
                        "message": "Requests to the ChatCompletions_Create Operation "
                        "have exceeded call rate limit. Please retry after 1 second.",
                    }
                },
                headers={"retry-after-ms": str(state.retry_after_ms), "retry-after": "1"},
            )
        reasoning = model.startswith(REASONING_PREFIXES)
        if reasoning:
            for name in REJECTED_FOR_REASONING:
                if name in payload:
                    hint = " Use 'max_completion_tokens' instead." if name == "max_tokens" else ""
                    return self._send(
                        400,
                        {
                            "error": {
                                "message": f"Unsupported parameter: '{name}' is not supported with this model.{hint}",
                                "type": "invalid_request_error",
                                "param": name,
                                "code": "unsupported_parameter",
                            }
                        },
                    )
        elif "reasoning_effort" in payload:
            return self._send(
                400,
                {
                    "error": {
                        "message": "Unrecognized request argument supplied: reasoning_effort",
                        "type": "invalid_request_error",
                        "param": "reasoning_effort",
                        "code": "unsupported_parameter",
                    }
                },
            )
        with state.lock:
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
            state.chats_started += 1
            first = state.chats_started == 1
            if state.in_flight >= self.fake.first_chat_waits_for:
                self.fake.enough_in_flight.set()
        try:
            if first:
                self.fake.enough_in_flight.wait(timeout=30)
            if self.fake.chat_delay_s:
                time.sleep(self.fake.chat_delay_s)
            messages = payload["messages"]
            answer = state.responder(model, messages)
            prompt_tokens = sum(words(m["content"]) for m in messages) + 3 * len(messages)
            key = json.dumps(messages, sort_keys=True)
            with state.lock:
                cached = prompt_tokens if key in state.seen_prompts else 0
                state.seen_prompts.add(key)
            reasoning_tokens = (
                state.reasoning_tokens if reasoning and payload.get("reasoning_effort") != "minimal" else 0
            )
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": words(answer) + reasoning_tokens,
                "total_tokens": prompt_tokens + words(answer) + reasoning_tokens,
                "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": reasoning_tokens,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            }
            completion_id = f"chatcmpl-{uuid.uuid4().hex[:12]}"
            if payload.get("stream"):
                return self._stream(
                    completion_id, model, answer, usage, bool(payload.get("stream_options", {}).get("include_usage"))
                )
            return self._send(
                200,
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [
                        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": answer}}
                    ],
                    "usage": usage,
                },
            )
        finally:
            with state.lock:
                state.in_flight -= 1

    def _stream(self, completion_id: str, model: str, answer: str, usage: dict, include_usage: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        base = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        chunks = [
            {**base, "choices": [], "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]},
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
        ]
        pieces = re.findall(r"\S+\s*|\s+", answer) or [""]
        chunks += [
            {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]} for piece in pieces
        ]
        chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if include_usage:
            chunks.append({**base, "choices": [], "usage": usage})
        for chunk in chunks:
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    # ---- files and fine-tuning jobs
    def _files_and_jobs(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        state = self.state
        if path == "/files" and method == "POST":
            return self._upload(body)
        if m := re.fullmatch(r"/files/([^/]+)", path):
            file = state.files.get(m.group(1))
            if file is None:
                return self._error(404, "NotFound", f"File with id {m.group(1)} not found")
            with state.lock:
                state.file_retrievals[file["id"]] = state.file_retrievals.get(file["id"], 0) + 1
                if state.file_retrievals[file["id"]] > 1:
                    file["status"] = "processed"
            return self._send(200, file)
        if m := re.fullmatch(r"/files/([^/]+)/content", path):
            if m.group(1) not in state.file_bytes:
                return self._error(404, "NotFound", f"File with id {m.group(1)} not found")
            return self._send_bytes(200, state.file_bytes[m.group(1)], "application/octet-stream")
        if path == "/fine_tuning/jobs" and method == "POST":
            return self._create_job(json.loads(body))
        if path == "/fine_tuning/jobs" and method == "GET":
            return self._send(200, {"object": "list", "data": list(state.jobs.values()), "has_more": False})
        if m := re.fullmatch(r"/fine_tuning/jobs/([^/]+)(/events|/checkpoints|/cancel)?", path):
            job_id, action = m.group(1), m.group(2)
            if job_id not in state.jobs:
                return self._error(404, "NotFound", f"fine-tuning job {job_id} not found")
            if action is None:
                return self._send(200, self._advance(job_id))
            if action == "/events":
                events = sorted(state.events[job_id], key=lambda e: e["created_at"], reverse=True)
                return self._send(200, {"object": "list", "data": events, "has_more": False})
            if action == "/checkpoints":
                return self._send(
                    200,
                    {
                        "object": "list",
                        "data": list(reversed(state.checkpoints[job_id])),
                        "has_more": False,
                        "first_id": None,
                        "last_id": None,
                    },
                )
            job = state.jobs[job_id]
            if job["status"] not in ("succeeded", "failed", "cancelled"):
                job["status"] = "cancelled"
                self._event(job_id, "Job cancelled")
            return self._send(200, job)
        return self._error(404, "NotFound", f"no route {method} {path}")

    def _upload(self, body: bytes) -> None:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body
        )
        parts = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
        purpose = parts["purpose"].get_content().strip() if "purpose" in parts else None
        if purpose not in ("fine-tune", "batch", "assistants"):
            return self._error(
                400, "invalidPayload", f"purpose must be fine-tune, batch or assistants, got {purpose!r}"
            )
        upload = parts["file"]
        content = upload.get_payload(decode=True)
        if purpose == "fine-tune":
            for number, line in enumerate(content.decode().splitlines(), start=1):
                record = json.loads(line)
                roles = [m["role"] for m in record.get("messages", [])]
                if "assistant" not in roles:
                    return self._error(400, "invalidPayload", f"line {number}: no assistant message")
        file_id = f"file-{uuid.uuid4().hex[:24]}"
        self.state.file_bytes[file_id] = content
        self.state.files[file_id] = {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": upload.get_filename(),
            "purpose": purpose,
            "status": "pending",
        }
        return self._send(201, self.state.files[file_id])

    def _create_job(self, payload: dict[str, Any]) -> None:
        state = self.state
        model = payload.get("model")
        if model not in FINE_TUNABLE:
            return self._error(
                400, "invalidPayload", f"The specified base model {model!r} does not support fine-tuning."
            )
        if "trainingType" not in payload:
            return self._error(
                400, "invalidPayload", "trainingType is required (Standard, GlobalStandard or developerTier)"
            )
        method = payload.get("method") or {}
        if method.get("type") != "supervised":
            return self._error(
                400, "invalidPayload", f"method.type {method.get('type')!r} is not supported for {model}"
            )
        for key in ("training_file", "validation_file"):
            if key in payload and payload[key] not in state.files:
                return self._error(400, "invalidPayload", f"{key} {payload[key]!r} not found")
        job_id = f"ftjob-{uuid.uuid4().hex[:24]}"
        hyperparameters = method.get("supervised", {}).get("hyperparameters", {})
        state.jobs[job_id] = {
            "id": job_id,
            "object": "fine_tuning.job",
            "created_at": int(time.time()),
            "model": model,
            "training_file": payload["training_file"],
            "validation_file": payload.get("validation_file"),
            "hyperparameters": {
                "n_epochs": hyperparameters.get("n_epochs", 1),
                "batch_size": hyperparameters.get("batch_size", 1),
                "learning_rate_multiplier": hyperparameters.get("learning_rate_multiplier", 1.0),
            },
            "method": method,
            "seed": payload.get("seed", 0),
            "suffix": payload.get("suffix"),
            "status": "pending",
            "fine_tuned_model": None,
            "finished_at": None,
            "result_files": [],
            "trained_tokens": None,
            "organization_id": "",
            "error": None,
            "estimated_finish": None,
            "integrations": None,
        }
        state.job_polls[job_id], state.events[job_id], state.checkpoints[job_id] = 0, [], []
        self._event(job_id, "Job enqueued. Waiting for jobs ahead to complete.")
        return self._send(201, state.jobs[job_id])

    def _advance(self, job_id: str) -> dict[str, Any]:
        state = self.state
        job = state.jobs[job_id]
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        state.job_polls[job_id] += 1
        status = JOB_WALK[min(state.job_polls[job_id], len(JOB_WALK) - 1)]
        if status == job["status"]:
            return job
        if status == "running":
            job["status"] = "running"
            self._event(job_id, "Training started.")
            return job
        if state.fail_jobs:
            job.update(
                status="failed",
                error={
                    "code": "invalidTrainingData",
                    "message": "Training file has too few examples.",
                    "param": "training_file",
                },
            )
            self._event(job_id, "Job failed: Training file has too few examples.")
            return job
        lines = state.file_bytes[job["training_file"]].decode().splitlines()
        epochs = int(job["hyperparameters"]["n_epochs"])
        tokens = sum(sum(words(m["content"]) for m in json.loads(line)["messages"]) for line in lines)
        steps = max(len(lines) * epochs // max(int(job["hyperparameters"]["batch_size"]), 1), 1)
        rows = []
        for step in range(1, steps + 1):
            loss = round(2.0 / step + 0.1, 4)
            rows.append(
                {
                    "step": step,
                    "train_loss": loss,
                    "train_mean_token_accuracy": round(1 - loss / 3, 4),
                    "valid_loss": round(loss + 0.05, 4),
                    "valid_mean_token_accuracy": round(1 - (loss + 0.05) / 3, 4),
                    "full_valid_loss": "",
                    "full_valid_mean_token_accuracy": "",
                }
            )
            self._event(
                job_id,
                f"Step {step}/{steps}: training loss={loss}",
                event_type="metrics",
                data={"step": step, "train_loss": loss},
            )
        rows[-1].update(
            full_valid_loss=rows[-1]["valid_loss"], full_valid_mean_token_accuracy=rows[-1]["valid_mean_token_accuracy"]
        )
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        results_id = f"file-{uuid.uuid4().hex[:24]}"
        state.file_bytes[results_id] = buffer.getvalue().encode()
        state.files[results_id] = {
            "id": results_id,
            "object": "file",
            "bytes": len(state.file_bytes[results_id]),
            "created_at": int(time.time()),
            "filename": "results.csv",
            "purpose": "fine-tune-results",
            "status": "processed",
        }
        fine_tuned = f"{job['model']}.ft-{job_id.removeprefix('ftjob-')[:12]}" + (
            f"-{job['suffix']}" if job["suffix"] else ""
        )
        for index, row in enumerate(rows[-2:] if len(rows) > 1 else rows):
            state.checkpoints[job_id].append(
                {
                    "id": f"ftckpt-{uuid.uuid4().hex[:12]}",
                    "object": "fine_tuning.job.checkpoint",
                    "created_at": int(time.time()) + index,
                    "fine_tuning_job_id": job_id,
                    "step_number": row["step"],
                    "fine_tuned_model_checkpoint": f"{fine_tuned}:ckpt-step-{row['step']}",
                    "metrics": {
                        k: float(row[k])
                        for k in ("train_loss", "train_mean_token_accuracy", "valid_loss", "valid_mean_token_accuracy")
                    }
                    | {"step": float(row["step"])},
                }
            )
        job.update(
            status="succeeded",
            fine_tuned_model=fine_tuned,
            finished_at=int(time.time()),
            result_files=[results_id],
            trained_tokens=tokens * epochs,
        )
        self._event(job_id, "Training job succeeded.")
        return job

    def _event(self, job_id: str, message: str, event_type: str = "message", data: dict | None = None) -> None:
        events = self.state.events[job_id]
        events.append(
            {
                "id": f"ftevent-{uuid.uuid4().hex[:12]}",
                "object": "fine_tuning.job.event",
                "created_at": int(time.time() * 1000) + len(events),
                "level": "info",
                "message": message,
                "type": event_type,
                "data": data or {},
            }
        )

    # ---- control plane
    def _arm(self, method: str, match: re.Match, query: dict[str, str], body: bytes) -> None:
        state = self.state
        if self.headers.get("Authorization") != f"Bearer {state.management_token}":
            return self._send(401, {"error": {"code": "AuthenticationFailed", "message": "Authentication failed."}})
        if "api-version" not in query:
            return self._send(
                400, {"error": {"code": "MissingApiVersionParameter", "message": "api-version is required"}}
            )
        name = match.group("name")
        prefix = self.path.split("?")[0]
        if name is None:
            return self._send(200, {"value": list(state.arm_deployments.values())})
        if method == "PUT":
            payload = json.loads(body)
            model = payload.get("properties", {}).get("model", {}).get("name")
            known = {j["fine_tuned_model"] for j in state.jobs.values() if j["fine_tuned_model"]} | set(
                state.deployments.values()
            )
            if model not in known or state.refuse_deployments:
                return self._send(
                    400,
                    {
                        "error": {
                            "code": "DeploymentModelNotSupported",
                            "message": f"The model '{model}' is not available to deploy.",
                        }
                    },
                )
            resource = {
                "id": prefix,
                "name": name,
                "type": "Microsoft.CognitiveServices/accounts/deployments",
                "sku": payload.get("sku"),
                "tags": payload.get("tags") or {},
                "properties": {**payload["properties"], "provisioningState": "Succeeded"},
                "systemData": {"createdAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
            }
            created = name not in state.arm_deployments
            state.arm_deployments[name] = resource
            state.deployments[name] = model
            return self._send(201 if created else 200, resource)
        if name not in state.arm_deployments:
            if method == "DELETE":
                return self._send_bytes(204, b"", "application/json")
            return self._send(
                404, {"error": {"code": "DeploymentNotFound", "message": f"Deployment {name} not found."}}
            )
        if method == "GET":
            return self._send(200, state.arm_deployments[name])
        if method == "DELETE":
            del state.arm_deployments[name]
            state.deployments.pop(name, None)
            return self._send_bytes(200, b"", "application/json")
        return self._send(405, {"error": {"code": "MethodNotAllowed", "message": method}})

    # ---- plumbing
    def _error(self, status: int, code: str, message: str) -> None:
        self._send(status, {"error": {"code": code, "message": message}})
