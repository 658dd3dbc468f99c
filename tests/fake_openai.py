"""A tiny OpenAI-compatible chat server on 127.0.0.1 for driving the real litellm -> openai code path in tests.

    with serve(["first reply", "second reply"]) as fake:
        LiteLLMModel("openai/fake-model", api_base=fake.base_url, api_key="test-key").complete(messages)
        fake.requests[0].body["messages"]

Token usage is deterministic: prompt_tokens counts the whitespace-separated words of all message contents,
completion_tokens the words of the reply (see `count_words`).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterable


@dataclass(frozen=True)
class Received:
    path: str
    headers: Message  # as received: names are case-insensitive, as HTTP's are
    body: dict


def count_words(messages: list[dict]) -> int:
    return sum(len(str(m.get("content") or "").split()) for m in messages)


def completion_body(model: str, texts: list[str], prompt_tokens: int, serial: int) -> dict:
    completion_tokens = sum(len(text.split()) for text in texts)
    return {
        "id": f"chatcmpl-fake-{serial}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            for i, text in enumerate(texts)
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def error_body(status: int, message: str) -> dict:
    return {"error": {"message": message, "type": "fake_error", "param": None, "code": str(status)}}


class FakeOpenAI:
    """Serves scripted replies in order; records every request, including failed ones."""

    def __init__(self, replies: Iterable[str] = (), honour_n: bool = True):
        self._replies = deque(replies)
        self.honour_n = honour_n  # False: one choice per request whatever `n` asks, as some providers do
        self._failures: deque[int | None] = deque()  # None: a 200 reply whose body is not JSON
        self._delay = 0.0
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self.requests: list[Received] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._server.handle_error = lambda request, address: None  # clients hanging up early is expected
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/v1"

    def add_replies(self, *replies: str) -> None:
        with self._lock:
            self._replies.extend(replies)

    def fail_next(self, n: int, status: int) -> None:
        """Answer the next `n` requests with an OpenAI-style error and this HTTP status."""
        with self._lock:
            self._failures.extend([status] * n)

    def malformed_next(self, n: int) -> None:
        """Answer the next `n` requests with HTTP 200 and a body that is not JSON."""
        with self._lock:
            self._failures.extend([None] * n)

    def delay(self, seconds: float) -> None:
        """Wait this long before answering each following request."""
        self._delay = seconds

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()  # wakes delayed handlers
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> FakeOpenAI:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _respond(self, received: Received) -> tuple[int, dict]:
        with self._lock:
            self.requests.append(received)
            serial = len(self.requests)
            if self._failures:
                status = self._failures.popleft()
                if status is None:
                    return 200, None
                return status, error_body(status, f"fake failure with HTTP {status}")
            if not self._replies:
                return 400, error_body(400, "fake server has no scripted reply left")
            body = received.body
            n = min(int(body.get("n") or 1) if self.honour_n else 1, len(self._replies))
            texts = [self._replies.popleft() for _ in range(n)]
        return 200, completion_body(body.get("model", ""), texts, count_words(body.get("messages", [])), serial)


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        fake: FakeOpenAI = self.server.fake
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, error_body(404, f"no route {self.path}"))
            return
        status, payload = fake._respond(Received(self.path, self.headers, body))
        if fake._closing.wait(fake._delay):
            return
        self._send(status, payload)

    def _send(self, status: int, payload: dict | None) -> None:
        data = json.dumps(payload).encode() if payload is not None else b"<html>not json</html>"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # keep pytest output clean
        pass


def serve(replies: Iterable[str] = (), honour_n: bool = True) -> FakeOpenAI:
    """Start a fake server; use it as `with serve([...]) as fake:` so it is shut down afterwards."""
    return FakeOpenAI(replies, honour_n).start()
