"""An OpenAI-compatible chat server (e.g. `python -m vllm.entrypoints.openai.api_server`).

Requests run on a bounded thread pool, each with a timeout; 5xx, 429 and connection errors
are retried with exponential backoff. A request that still fails comes back as a Completion
with `error` set (never cached, so a rerun asks again). When the server stops answering
altogether, `generate` raises `EngineDown` carrying the answers that did arrive, so the
caller can cache them before the run stops.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tagger.errors import ConfigError, EngineDown, ModelError
from tagger.llm.base import Completion, GenerationParams, Messages, settings_from

RETRY_STATUS = {429, 500, 502, 503, 504}


@dataclass(frozen=True)
class OpenAISettings:
    """The keywords of `create_engine("openai", model=..., ...)`; timeout and backoff in seconds."""

    base_url: str | None = None
    seed: int = 0
    api_key: str | None = None
    concurrency: int = 8
    timeout: float = 120.0
    retries: int = 4
    backoff: float = 0.5


class OpenAIEngine:
    def __init__(self, model: str, **options: Any):
        """`options`: the fields of OpenAISettings; others are ignored."""
        settings = settings_from(OpenAISettings, options)
        base_url, concurrency, timeout, retries = (settings.base_url, settings.concurrency, settings.timeout,
                                                   settings.retries)
        if not base_url:
            raise ConfigError("--engine openai needs --base-url, e.g. --base-url http://127.0.0.1:8000/v1")
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"--base-url must start with http:// or https:// (got '{base_url}')")
        if concurrency < 1 or timeout <= 0 or retries < 0:
            raise ConfigError("--concurrency must be >= 1 and --timeout > 0")
        self.model_id = str(model)
        self.base_url = base_url.rstrip("/")
        self.seed = settings.seed
        self.concurrency = concurrency
        self.retries = retries
        self.backoff = settings.backoff
        self.options = {"base_url": self.base_url, "concurrency": concurrency, "timeout_s": timeout, "retries": retries}
        key = settings.api_key or os.environ.get("TAGGER_API_KEY") or os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(
            base_url=self.base_url + "/", headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        self._down = threading.Event()
        self._vllm = self._check_model()

    # -- setup -------------------------------------------------------------------------

    def _check_model(self) -> bool:
        """Fail early and clearly: server unreachable, not OpenAI-compatible, or model not served."""
        response = None
        tries = min(self.retries, 2)  # a server that is not up at the start is not coming up soon
        for attempt in range(tries + 1):
            try:
                response = self._client.get("models")
            except httpx.TransportError as exc:
                if attempt == tries:
                    self.close()
                    raise ModelError(f"cannot reach the model server at {self.base_url} ({_reason(exc)}); "
                                     "start it or fix --base-url") from None
            else:
                if response.status_code not in RETRY_STATUS or attempt == tries:
                    break
            time.sleep(self._delay(attempt))
        assert response is not None
        if response.status_code in (401, 403):
            self.close()
            raise ModelError(f"the server at {self.base_url} refused the request (HTTP {response.status_code}); "
                             "pass a valid key with --api-key or TAGGER_API_KEY")
        try:
            response.raise_for_status()
            served = response.json()["data"]
            ids = [m["id"] for m in served]
        except (httpx.HTTPStatusError, ValueError, KeyError, TypeError):
            self.close()
            raise ModelError(f"{self.base_url}/models did not answer like an OpenAI-compatible server "
                             f"(HTTP {response.status_code}); the base URL usually ends in /v1") from None
        if self.model_id not in ids:
            # A local folder may be served under another spelling of its path (relative, symlinked).
            same = [i for i in ids if _same_folder(i, self.model_id)]
            self.model_id = same[0] if same else self.model_id
        if self.model_id not in ids:
            self.close()
            raise ModelError(f"model '{self.model_id}' is not served by {self.base_url}; it serves: "
                             f"{', '.join(ids) or 'nothing'}; pass one of them with --model")
        return any(m.get("owned_by") == "vllm" for m in served if m.get("id") == self.model_id)

    def _delay(self, attempt: int) -> float:
        return min(self.backoff * 2**attempt, 30.0)

    # -- generation ----------------------------------------------------------------------

    def generate(
        self, chats: Sequence[Messages], *, schemas: Sequence[dict[str, Any]], params: GenerationParams
    ) -> list[Completion]:
        self._down.clear()
        with ThreadPoolExecutor(max_workers=min(self.concurrency, max(len(chats), 1))) as pool:
            results = list(pool.map(lambda chat, schema: self._request(chat, schema, params), chats, schemas))
        if self._down.is_set():
            raise EngineDown(f"the model server at {self.base_url} stopped answering; the answers received so far "
                             "are cached: restart the server and run the same command again", results)
        return results

    def _body(self, chat: Messages, schema: dict[str, Any], params: GenerationParams) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model_id, "messages": list(chat), "max_tokens": params.max_tokens,
                                "temperature": params.temperature, "seed": params.seed}
        if self._vllm:
            # vLLM's own field also lets us forbid free whitespace inside the JSON, which
            # small models otherwise fill with newlines until the budget runs out.
            body["structured_outputs"] = {"json": schema, "disable_any_whitespace": True}
        else:
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
        return body

    def _request(self, chat: Messages, schema: dict[str, Any], params: GenerationParams) -> Completion:
        body = self._body(chat, schema, params)
        error = ""
        for attempt in range(self.retries + 1):
            if self._down.is_set():
                return _failed("not sent: the server stopped answering")
            try:
                response = self._client.post("chat/completions", json=body)
            except httpx.TimeoutException as exc:
                error = f"timed out ({_reason(exc)})"
            except httpx.TransportError as exc:
                error = f"connection failed ({_reason(exc)})"
                if attempt == self.retries:
                    self._down.set()
            else:
                if response.status_code == 200:
                    return _completion(response)
                error = f"HTTP {response.status_code}: {response.text[:200].strip()}"
                if response.status_code not in RETRY_STATUS:
                    return _failed(error)
            if attempt < self.retries:
                time.sleep(self._delay(attempt))
        return _failed(error)

    def close(self) -> None:
        self._client.close()


def _completion(response: httpx.Response) -> Completion:
    try:
        data = response.json()
        choice = data["choices"][0]
        usage = data.get("usage") or {}
        return Completion(text=choice["message"].get("content") or "",
                          finish_reason=choice.get("finish_reason") or "stop",
                          prompt_tokens=usage.get("prompt_tokens") or 0,
                          output_tokens=usage.get("completion_tokens") or 0)
    except (ValueError, KeyError, IndexError, TypeError):
        return _failed(f"unreadable answer: {response.text[:200]}")


def _failed(error: str) -> Completion:
    return Completion(text="", finish_reason="error", error=error[:300])


def _same_folder(a: str, b: str) -> bool:
    try:
        return Path(a).is_dir() and Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _reason(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
