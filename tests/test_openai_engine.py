"""The OpenAI-compatible engine against a tiny fake server on 127.0.0.1: retries, timeouts,
wrong model, server down, and a server that dies mid-run (answers so far cached, rerun resumes)."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tagger.cache import ResultCache
from tagger.cli import main
from tagger.errors import ConfigError, EngineDown, ModelError
from tagger.llm.base import GenerationParams, create_engine
from tagger.llm.structured import StructuredSettings, run_structured
from tagger.schemas import LLMSegmentName

ANSWER = json.dumps({"label": "dog owners", "description": "People with dogs."})
PARAMS = GenerationParams(max_tokens=32)
SCHEMA = LLMSegmentName.model_json_schema()


class FakeServer:
    """`plan` is consumed one entry per chat request: an HTTP status, 'slow' (sleeps past the
    client timeout) or 'ok'; when it runs out every request gets 'ok'."""

    def __init__(self, models=("m",), plan=()):
        self.models, self.plan, self.requests = list(models), list(plan), []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, payload):
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": m, "owned_by": "test"} for m in server.models]})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(body)
                    step = server.plan.pop(0) if server.plan else "ok"
                if step == "slow":
                    time.sleep(1.5)
                    step = "ok"
                if step == "ok":
                    self._send(200, {"choices": [{"message": {"content": ANSWER}, "finish_reason": "stop"}],
                                     "usage": {"prompt_tokens": 7, "completion_tokens": 5}})
                else:
                    self._send(int(step), {"error": f"status {step}"})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    running = []

    def start(**kwargs):
        running.append(FakeServer(**kwargs))
        return running[-1]

    yield start
    for s in running:
        s.stop()


def engine(url, **kwargs):
    options = {"model": "m", "base_url": url, "backoff": 0.01, "timeout": 1.0, "concurrency": 4} | kwargs
    return create_engine("openai", **options)


def chats(n):
    return [[{"role": "user", "content": f"name group {i}"}] for i in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_answers_are_returned_in_order_with_the_schema_sent(server):
    srv = server()
    out = engine(srv.url).generate(chats(6), schemas=[SCHEMA] * 6, params=PARAMS)
    assert [c.text for c in out] == [ANSWER] * 6 and all(not c.error for c in out)
    assert out[0].prompt_tokens == 7 and out[0].output_tokens == 5
    sent = sorted(r["messages"][0]["content"] for r in srv.requests)
    assert sent == sorted(f"name group {i}" for i in range(6))
    assert srv.requests[0]["response_format"]["json_schema"]["schema"] == SCHEMA
    assert srv.requests[0]["model"] == "m" and srv.requests[0]["max_tokens"] == 32


def test_5xx_and_429_are_retried_with_backoff_then_succeed(server):
    srv = server(plan=["503", "500", "429"])
    out = engine(srv.url, concurrency=1).generate(chats(1), schemas=[SCHEMA], params=PARAMS)
    assert out[0].text == ANSWER and not out[0].error
    assert len(srv.requests) == 4


def test_a_request_that_keeps_failing_comes_back_as_an_error_and_is_not_cached(server):
    srv = server(plan=["503"] * 3)
    cache = ResultCache(None)
    eng = engine(srv.url, retries=2, concurrency=1)
    outcomes = run_structured(eng, chats(2), LLMSegmentName, lambda i, a: a.label, StructuredSettings(params=PARAMS),
                              cache=cache)
    # the first chat's 3 tries all got 503; the retry pass then succeeds for it
    assert [o.value for o in outcomes] == ["dog owners", "dog owners"]
    srv.plan = ["503"] * 3
    out = eng.generate(chats(1), schemas=[SCHEMA], params=PARAMS)
    assert out[0].error.startswith("HTTP 503") and out[0].text == ""


def test_client_errors_are_not_retried(server):
    srv = server(plan=["400"])
    out = engine(srv.url).generate(chats(1), schemas=[SCHEMA], params=PARAMS)
    assert out[0].error.startswith("HTTP 400") and len(srv.requests) == 1


def test_a_slow_answer_times_out_and_is_retried(server):
    srv = server(plan=["slow"])
    started = time.perf_counter()
    out = engine(srv.url, timeout=0.5, concurrency=1).generate(chats(1), schemas=[SCHEMA], params=PARAMS)
    assert out[0].text == ANSWER and len(srv.requests) == 2
    assert time.perf_counter() - started < 5


def test_timeouts_exhausting_the_retries_give_an_error_completion(server):
    srv = server(plan=["slow"] * 3)
    out = engine(srv.url, timeout=0.3, retries=2, concurrency=1).generate(chats(1), schemas=[SCHEMA], params=PARAMS)
    assert out[0].error.startswith("timed out")


def test_wrong_model_name_lists_what_the_server_serves(server):
    srv = server(models=["served-a", "served-b"])
    with pytest.raises(ModelError, match="model 'm' is not served by .*served-a, served-b.*--model"):
        engine(srv.url)


def test_server_down_is_a_clear_error():
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(ModelError, match="cannot reach the model server .*start it or fix --base-url"):
        engine(url, retries=1)


@pytest.mark.parametrize("url,message", [(None, "needs --base-url"), ("127.0.0.1:8000", "must start with http")])
def test_bad_base_url(url, message):
    with pytest.raises(ConfigError, match=message):
        engine(url)


def test_server_dying_mid_call_raises_engine_down_and_keeps_the_answers_that_came(server):
    srv = server()
    eng = engine(srv.url, retries=1, concurrency=1)
    cache = ResultCache(None)
    stored = []
    cache.put_many = lambda items: stored.extend(items)
    original = eng._request

    def request(chat, schema, params):
        if chat[0]["content"] == "name group 3":
            srv.stop()  # the server dies after three answers
        return original(chat, schema, params)

    eng._request = request
    with pytest.raises(EngineDown, match="stopped answering.*restart the server and run the same command again"):
        run_structured(eng, chats(6), LLMSegmentName, lambda i, a: a.label, StructuredSettings(params=PARAMS),
                       cache=cache)
    assert len(stored) == 3


def test_cli_reports_a_down_server_in_one_line(capsys, comments_csv, tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    code = main(["segment", str(comments_csv), "--out", str(tmp_path / "o"), "--engine", "openai", "--base-url", url,
                 "--model", "m", "--embedder", "hash", "--timeout", "2"])
    _, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert code == 3 and len(errors) == 1 and errors[0].startswith("error: cannot reach the model server")
    assert "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_cli_segments_through_the_server_and_keeps_the_key_out_of_run_json(capsys, server, comments_csv, tmp_path):
    srv = server()
    # the fake server always names; tags come back unusable, so users fail but the run completes
    code = main(["segment", str(comments_csv), "--out", str(tmp_path / "o"), "--engine", "openai", "--base-url", srv.url,
                 "--model", "m", "--embedder", "hash", "--api-key", "sekrit", "--concurrency", "3"])
    capsys.readouterr()
    assert code == 0
    text = (tmp_path / "o" / "run.json").read_text()
    assert "sekrit" not in text and json.loads(text)["engine_options"]["concurrency"] == 3


# --- a real vLLM server on loopback, killed mid-run and restarted ------------------------


def start_vllm_server(model_dir, port: int, log_path):
    import os
    import subprocess
    import sys

    from tagger.llm.vllm_engine import CPU_KV_CACHE_BYTES

    log = open(log_path, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir), "--host", "127.0.0.1",
         "--port", str(port), "--dtype", "float32", "--enforce-eager", "--max-model-len", "2048",
         "--kv-cache-memory-bytes", str(CPU_KV_CACHE_BYTES), "--seed", "0"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env=os.environ | {"VLLM_LOGGING_LEVEL": "WARNING", "TOKENIZERS_PARALLELISM": "false"})
    import httpx

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"vLLM server exited: {open(log_path, errors='ignore').read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(1)
    kill_group(proc)
    raise AssertionError("vLLM server did not start within 300 s")


def kill_group(proc) -> None:
    import os
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    raise AssertionError("vLLM server processes survived SIGKILL")


@pytest.mark.engine
@pytest.mark.timeout(1200)
def test_real_vllm_server_killed_mid_run_then_restarted(tmp_path):
    import os
    import sqlite3
    import subprocess
    import sys

    import pandas as pd

    pytest.importorskip("vllm", reason="the CPU engine extra is not installed")
    from tagger.llm.embedded import embedded_model_dir
    from tagger.paths import tagger_home
    from tests.conftest import AMAZON_SAMPLE

    model_dir = embedded_model_dir().resolve()
    rows = pd.read_csv(AMAZON_SAMPLE, dtype=str, keep_default_na=False)
    users = sorted(rows["user_id"].unique())[100:124]
    data = tmp_path / "reviews.csv"
    rows[rows["user_id"].isin(users)].drop(columns=["category"]).to_csv(data, index=False)
    port = free_port()
    out = tmp_path / "run"
    command = [sys.executable, "-m", "tagger", "segment", str(data), "--out", str(out), "--engine", "openai",
               "--base-url", f"http://127.0.0.1:{port}/v1", "--model", str(model_dir), "--batch-size", "4",
               "--concurrency", "4", "--timeout", "60", "--embedder", "hash", "--no-report"]
    db = tagger_home() / "cache.sqlite"

    def stored() -> int:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
                return conn.execute("SELECT count(*) FROM answers").fetchone()[0]
        except sqlite3.OperationalError:
            return 0

    server = start_vllm_server(model_dir, port, tmp_path / "server.log")
    try:
        run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        deadline = time.monotonic() + 300
        while stored() < 8 and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert run.poll() is None and stored() >= 8, "tagging through the server did not start in time"
        kill_group(server)  # the server dies mid-run
        _, err = run.communicate(timeout=120)
    finally:
        kill_group(server)
        if run.poll() is None:
            os.killpg(run.pid, 9)
    assert run.returncode == 3 and "stopped answering" in err and "Traceback" not in err, err[-2000:]
    assert not out.exists()
    before = stored()
    assert 8 <= before < len(users)

    server = start_vllm_server(model_dir, port, tmp_path / "server.log")
    try:
        again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    finally:
        kill_group(server)
    assert again.returncode == 0, again.stderr[-2000:]
    summary = json.loads((out / "run.json").read_text())
    assert summary["cache"]["hits"] >= before  # nothing answered before the crash was asked again
    assert summary["counts"]["users"] == len(users)
    assert "engine error" not in summary["counts"]["failure_reasons"]  # nothing lost
    assert summary["counts"]["tagged"] >= 0.8 * len(users)
    print(f"\nserver fault: {before} answers cached when the server died; after restart hits={summary['cache']['hits']} "
          f"misses={summary['cache']['misses']} tagged={summary['counts']['tagged']}/{len(users)}")
