"""A scriptable local fake of an external model API (OpenAI, Anthropic, Mistral) on 127.0.0.1.

Each test queues the answers the fake gives, in order: ``json_answer`` (a status and a JSON body),
``sse_answer`` (server-sent events, optionally paced) or ``stall`` (answers nothing for a while). The
fake records every request it received (path, headers, decoded JSON body) so tests can check the wire
format the gateway sent. ``require_key`` makes it answer 401 to any other key, like the real APIs.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Answer:
    status: int = 200
    body: Any = None
    events: list[tuple[str, str]] | None = None  # (event name or "", data) for SSE answers
    pause_s: float = 0.0  # before answering (a stalled provider)
    event_pause_s: float = 0.0  # between SSE events


def json_answer(body: Any, status: int = 200) -> Answer:
    return Answer(status=status, body=body)


def sse_answer(events: list[tuple[str, Any]], event_pause_s: float = 0.0) -> Answer:
    encoded = [(name, data if isinstance(data, str) else json.dumps(data)) for name, data in events]
    return Answer(events=encoded, event_pause_s=event_pause_s)


def stall(seconds: float) -> Answer:
    return Answer(pause_s=seconds, body={"late": True})


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeApi:
    url: str
    answers: list[Answer] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    require_key: str | None = None  # answers 401 to requests that do not carry this key

    def queue(self, *answers: Answer) -> None:
        self.answers.extend(answers)


def _handler(api: FakeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            api.received.append(Received(self.path, headers, json.loads(raw) if raw else None))
            if api.require_key is not None:
                sent = headers.get("x-api-key") or headers.get("api-key") or headers.get("authorization", "")
                if sent.removeprefix("Bearer ") != api.require_key:
                    error = {"error": {"type": "authentication_error", "message": "invalid x-api-key"}}
                    self._json(401, error)
                    return
            answer = api.answers.pop(0) if api.answers else json_answer({"error": "no answer queued"}, 500)
            if answer.pause_s:
                time.sleep(answer.pause_s)
            if answer.events is not None:
                self._sse(answer)
            else:
                self._json(answer.status, answer.body)

        def _json(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            with contextlib.suppress(OSError):  # the client may have gone
                self.wfile.write(data)

        def _sse(self, answer: Answer) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                for name, data in answer.events or []:
                    if answer.event_pause_s:
                        time.sleep(answer.event_pause_s)
                    prefix = f"event: {name}\n" if name else ""
                    self.wfile.write(f"{prefix}data: {data}\n\n".encode())
                    self.wfile.flush()
            except OSError:
                pass  # the gateway closed the stream
            self.close_connection = True

    return Handler


def start_fake_api() -> Iterator[FakeApi]:
    """A running fake (generator for a pytest fixture): stopped when the test ends."""
    api = FakeApi(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    server.daemon_threads = True
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
