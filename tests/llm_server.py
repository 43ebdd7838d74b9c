"""A scripted OpenAI-compatible chat server on 127.0.0.1, for driving the LLM proposer through litellm.

    with ScriptedLLMServer() as server:
        server.script(Reply("hypothesis...\\n\\ntrain.py\\n<<<<<<< SEARCH\\n..."), Reply(status=500))
        settings = ProposerConfig(kind="llm", model="openai/test-model", api_base=server.url)

Each POST /v1/chat/completions takes the next scripted Reply (or `default` when the script is empty): a
completion text, an HTTP error status, a delay (a hang, to trigger timeouts), or a raw malformed body. The
server records every request's JSON body and headers, so tests can read the prompts and the Authorization
header the client sent.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted response."""

    content: str = ""
    status: int = 200
    delay_s: float = 0.0
    raw: bytes | None = None  # sent as the body instead of a completion (malformed answers)
    prompt_tokens: int | None = None  # usage to report; None: estimated from the request
    completion_tokens: int | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    """One request as the server saw it."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))

    @property
    def prompt(self) -> str:
        """All message contents joined, in order."""
        return "\n\n".join(str(m.get("content", "")) for m in self.messages)


class ScriptedLLMServer:
    """A real HTTP server in a daemon thread; use as a context manager. `port=0` (default) picks a free port;
    a given port lets a test bring a provider "back" at the address a campaign already knows."""

    def __init__(self, default: Reply | None = None, port: int = 0) -> None:
        self.default = default or Reply(status=500, raw=b'{"error": {"message": "no scripted reply left"}}')
        self.requests: list[Received] = []
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="llm-server", daemon=True)

    # ------------------------------------------------------------------------------------------ control

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The `api_base` to give litellm."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def script(self, *replies: Reply | str) -> None:
        """Queue replies (a str is a 200 completion with that text)."""
        with self._lock:
            self._queue.extend(Reply(content=r) if isinstance(r, str) else r for r in replies)

    def start(self) -> ScriptedLLMServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> ScriptedLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next(self, received: Received) -> Reply:
        with self._lock:
            self.requests.append(received)
            return self._queue.popleft() if self._queue else self.default


def closed_port_url() -> str:
    """An api_base on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


# ------------------------------------------------------------------------------------------- handler


def _handler(server: ScriptedLLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:  # /v1/models, for clients that probe
            self._send(200, json.dumps({"object": "list", "data": [{"id": "test-model", "object": "model"}]}).encode())

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                body = {"unparsed": raw.decode(errors="replace")}
            received = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            reply = server._next(received)
            if reply.delay_s:
                time.sleep(reply.delay_s)
            if reply.raw is not None:
                self._send(reply.status, reply.raw, reply.headers)
            elif reply.status != 200:
                error = {"error": {"message": f"scripted status {reply.status}", "type": "server_error", "code": None}}
                self._send(reply.status, json.dumps(error).encode(), reply.headers)
            else:
                self._send(200, json.dumps(_completion(body, reply, received)).encode(), reply.headers)

        def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                pass

    return Handler


def _completion(body: dict[str, Any], reply: Reply, received: Received) -> dict[str, Any]:
    prompt_tokens = reply.prompt_tokens if reply.prompt_tokens is not None else len(received.prompt) // 4
    completion_tokens = reply.completion_tokens if reply.completion_tokens is not None else len(reply.content) // 4
    return {
        "id": f"chatcmpl-{int(time.time() * 1e6)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(body.get("model", "test-model")),
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": reply.content}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
