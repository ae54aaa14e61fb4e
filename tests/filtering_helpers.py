"""Shared pieces of the filtering tests: real clips, a loopback HTTP server speaking the
OpenAI chat-completions protocol (scripted answers, delays), the vLLM venv."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = Path(os.environ.get("ORV_VLLM_VENV", PROJECT_ROOT / ".venv-vllm")) / "bin" / "python"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ChatServer:
    """A real HTTP server on 127.0.0.1 answering ``/v1/chat/completions`` with scripted
    texts after ``delay`` seconds; counts requests and the most in flight.

    ``answers``: ``{"score": [...], "caption": [...]}``; a request with a
    ``response_format`` is a scoring request. ``GET /v1/models`` lists ``models`` (404 when None). Each kind's list is used in arrival order
    and its last entry repeats."""

    def __init__(self, answers: dict, delay: float = 0.0, models: list[str] | None = None):
        self.answers, self.delay, self.models = answers, delay, models
        self.served = {kind: 0 for kind in answers}
        self.count = self.in_flight = self.max_in_flight = 0
        self.bodies = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # /v1/models: 404 unless the server was given model names
                if outer.models is None or not self.path.rstrip("/").endswith("/models"):
                    self.send_error(404)
                    return
                payload = json.dumps({"object": "list", "data": [
                    {"id": m, "object": "model", "created": 0, "owned_by": "test"} for m in outer.models]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    kind = "score" if "response_format" in body or "caption" not in outer.answers else "caption"
                    texts = outer.answers[kind]
                    answer = texts[min(outer.served[kind], len(texts) - 1)]
                    outer.served[kind] += 1
                    outer.count += 1
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                    outer.bodies.append(body)
                try:
                    time.sleep(outer.delay)
                    payload = json.dumps({
                        "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": answer}}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with outer.lock:
                        outer.in_flight -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
