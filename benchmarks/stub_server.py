"""A trivial OpenAI-shaped HTTP server on the standard library: the floor any Python server sits on.

It answers every POST with a fixed chat completion (or a fixed SSE stream when the body asks for one),
without auth, parsing or logging, over HTTP/1.1 keep-alive. The comparison can run it next to the real
servers to show how much of their latency is plain HTTP handling, and it lets the load client be
tested without either real server.

    python benchmarks/stub_server.py --port 18500
    python benchmarks/stub_server.py --port 18501 --pace-ms 20 --tokens 20   # a paced streaming model

With ``--pace-ms``, a streamed answer is ``--tokens`` content chunks, each sent (HTTP/1.1 chunked) one
interval after the previous one, the first one interval after the request: the upstream model of the
streaming comparison, whose own time to first token is the interval.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_COMPLETION = json.dumps(
    {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": 0,
        "model": "echo",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "stub"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
).encode()
_CHUNK = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 0, "model": "echo"}
_STREAM = (
    f"data: {json.dumps({**_CHUNK, 'choices': [{'index': 0, 'delta': {'content': 'stub'}}]})}\n\n"
    f"data: {json.dumps({**_CHUNK, 'choices': [{'index': 0, 'delta': {}, 'finish_reason': 'stop'}]})}\n\n"
    "data: [DONE]\n\n"
).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without this, Nagle plus delayed ACK stalls each one ~40 ms.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._send(200, "application/json", b'{"status":"ok"}')

    pace_s: float | None = None
    tokens: int = 1

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.pace_s is not None and json.loads(body).get("stream"):
            self._paced_stream()
        elif b'"stream":true' in body:
            self._send(200, "text/event-stream", _STREAM)
        else:
            self._send(200, "application/json", _COMPLETION)

    def _paced_stream(self) -> None:
        assert self.pace_s is not None
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        events = [{**_CHUNK, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
        for i in range(self.tokens):
            events.append({**_CHUNK, "choices": [{"index": 0, "delta": {"content": f"t{i} "}}]})
        events.append({**_CHUNK, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        for i, event in enumerate(events):
            if 0 < i <= self.tokens:
                time.sleep(self.pace_s)
            data = f"data: {json.dumps(event)}\n\n".encode()
            self.wfile.write(b"%x\r\n%b\r\n" % (len(data), data))
        done = b"data: [DONE]\n\n"
        self.wfile.write(b"%x\r\n%b\r\n0\r\n\r\n" % (len(done), done))

    def _send(self, status: int, content_type: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default listen backlog is 5: 32 clients connecting at once overflow it, and the
    # dropped connection attempts come back after a 1 s SYN retransmit or as resets.
    request_queue_size = 128


def serve(port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Start the stub in a daemon thread (for tests); call ``shutdown()`` on the result to stop it."""
    server = _Server((host, port), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pace-ms", type=float, help="stream --tokens chunks, one every PACE_MS")
    parser.add_argument("--tokens", type=int, default=20)
    args = parser.parse_args()
    handler: type[_Handler] = _Handler
    if args.pace_ms is not None:
        handler = type("PacedHandler", (_Handler,), {"pace_s": args.pace_ms / 1000, "tokens": args.tokens})
    _Server(("127.0.0.1", args.port), handler).serve_forever()


if __name__ == "__main__":
    main()
