"""A GGUF served by ``llama_cpp.server`` on 127.0.0.1, and the OpenAI-compatible backend that evaluates it.

``LlamaCppServer`` starts the server on a free port as a child process, waits until ``/v1/models``
answers, and stops it on exit (terminate, then kill). The server is told to use the chat template
embedded in the GGUF (``--chat_format chat_template.default``), so it never falls back to another
format. ``LlamaCppServerBackend`` is ``OpenAICompatibleBackend`` pointed at it: the same request,
streaming and usage code as every other API row, on the local CPU (priced by device time).

Run as a module (``python -m ftassets.backends.llama_cpp_server --model X.gguf ...``) it is
``llama_cpp.server`` with llama.cpp's weight repacking off (see ``ftassets/export/llama_runtime.py``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from ftassets.backends.openai_compatible import OpenAICompatibleBackend

TEMPLATE_CHAT_FORMAT = "chat_template.default"
_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""Requests to our own server never go through an HTTP proxy the environment may name."""


class ServerStartError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class LlamaCppServer:
    """``with LlamaCppServer(path) as server: server.base_url`` serves ``path`` until the block ends."""

    def __init__(
        self,
        model_path: Path,
        *,
        alias: str | None = None,
        n_ctx: int = 2048,
        threads: int = 2,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout_s: float = 120.0,
    ) -> None:
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise FileNotFoundError(f"GGUF file {self.model_path} does not exist; materialize gguf_export for it first")
        self.alias = alias or self.model_path.stem
        self.n_ctx, self.threads, self.host, self.port = n_ctx, threads, host, port
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen | None = None
        self._log: Any = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "ftassets.backends.llama_cpp_server",
            "--model",
            str(self.model_path),
            "--model_alias",
            self.alias,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.n_ctx),
            "--n_threads",
            str(self.threads),
            "--n_threads_batch",
            str(self.threads),
            "--chat_format",
            TEMPLATE_CHAT_FORMAT,
            "--verbose",
            "false",
        ]

    def start(self) -> LlamaCppServer:
        self.port = self.port or free_port(self.host)
        self._log = tempfile.TemporaryFile(mode="w+")
        environment = {**os.environ, "HOST": self.host, "PORT": str(self.port)}
        self.process = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT, env=environment)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                message = (
                    f"llama_cpp.server for {self.model_path} exited with {self.process.returncode}: {self.log_tail()}"
                )
                self.stop()
                raise ServerStartError(message)
            try:
                with _LOOPBACK.open(f"{self.base_url}/models", timeout=2.0) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise ServerStartError(
            f"llama_cpp.server for {self.model_path} did not answer within {self.startup_timeout_s:.0f} s"
        )

    def peak_memory_mb(self) -> float:
        """The server process's peak resident memory (VmHWM), where /proc has it."""
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except (OSError, AttributeError, ValueError):
            pass
        return float("nan")

    def log_tail(self, characters: int = 2000) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read()[-characters:]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> LlamaCppServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


class LlamaCppServerBackend(OpenAICompatibleBackend):
    """A GGUF behind its own ``llama_cpp.server``: one request at a time (the server serialises them anyway,
    so latencies are per request, not queueing), stopped with the backend. Not streamed: the server sends no
    usage in a stream (it ignores ``stream_options``), and exact token counts matter more here than time to
    first token."""

    device = "cpu"

    def __init__(self, server: LlamaCppServer, *, name: str, timeout_s: float = 300.0) -> None:
        from openai import DefaultHttpx2Client, OpenAI

        client = OpenAI(
            base_url=server.base_url,
            api_key="not-needed-locally",
            timeout=timeout_s,
            max_retries=0,
            http_client=DefaultHttpx2Client(trust_env=False),
        )
        super().__init__(client, server.alias, name=name, concurrency=1, stream=False)
        self.server = server

    def generate(self, conversations: list[list[dict[str, str]]], max_new_tokens: int):
        generations = super().generate(conversations, max_new_tokens)
        self.peak_memory_mb = self.server.peak_memory_mb()
        return generations

    def close(self) -> None:
        super().close()
        self.server.stop()


def _serve() -> None:
    from llama_cpp.server.__main__ import main

    from ftassets.export.llama_runtime import without_weight_repacking

    with without_weight_repacking():
        main()


if __name__ == "__main__":
    _serve()
