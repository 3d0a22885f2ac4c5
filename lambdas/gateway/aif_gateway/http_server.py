"""The gateway's own HTTP server: one code path for ``ai-factory serve`` and the deployed Lambda.

Each HTTP request becomes an API Gateway REST proxy event for ``Gateway.handle``; a proxy response is
written in one piece, a ``StreamingResponse`` (``stream: true``) as HTTP/1.1 chunks, each flushed when
the gateway produces it. Locally it runs on 127.0.0.1 (``ai_factory.local.server``); in AWS the Lambda
Web Adapter forwards API Gateway's invocation to it on ``AWS_LWA_PORT`` and streams the response back
(``lambda_server``). Standard library only, HTTP/1.1 keep-alive, no per-request logging, so the server
adds little overhead of its own.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl

from .config import GatewayConfig
from .errors import GatewayError, InternalError, InvalidRequest, PayloadTooLarge
from .streaming import StreamingResponse

log = logging.getLogger(__name__)

# Bodies above gateway max_body_bytes get the gateway's own 413; bodies above this are refused before
# they are read, so a client cannot make the server buffer an unbounded amount of memory.
HARD_CAP_FACTOR = 2
# Idle keep-alive connections are closed after this many seconds (one thread each).
IDLE_TIMEOUT_S = 120.0
# After refusing a body it did not read, the server drains at most this much for at most this long.
LINGER_S = 0.5
LINGER_MAX_BYTES = 4 * 1024 * 1024
# Where the Lambda Web Adapter passes API Gateway's requestContext (JSON).
LAMBDA_CONTEXT_HEADER = "x-amzn-request-context"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class ProxyHandler(Protocol):
    """What the server needs from the gateway: the Lambda proxy contract, plus streamed responses."""

    def handle(self, event: dict[str, Any], context: Any = None) -> dict[str, Any] | StreamingResponse: ...


class LengthRequired(GatewayError):
    status = 411
    type = "invalid_request_error"
    code = "length_required"


class GatewayRequestHandler(BaseHTTPRequestHandler):
    """Translates one HTTP exchange into one proxy event and writes the gateway's response back,
    streamed ones chunk by chunk. Attributes are set on a subclass per server."""

    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "ai-factory-local"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = IDLE_TIMEOUT_S
    gateway: ProxyHandler
    max_read_bytes: int
    access_log: bool = False
    trust_lambda_context: bool = False
    stage: str = "local"
    after_response: Callable[[], None] | None = None  # called once the response is written (or failed)
    _unread_body: bool = False

    def log_message(self, format: str, *args: Any) -> None:
        if self.access_log:
            log.info("%s - %s", self.address_string(), format % args)

    def _dispatch(self) -> None:
        try:
            response = self.gateway.handle(self._event(self._read_body()), None)
            if isinstance(response, StreamingResponse):
                self._write_stream(response)
            else:
                self._write_proxy_response(response)
        except GatewayError as exc:
            self._write_error(exc)
            if self._unread_body:
                self._linger()
        except ConnectionError:
            self.close_connection = True  # the client went away; nobody to answer
        except Exception:
            log.exception("gateway server failed on %s %s", self.command, self.path)
            self.close_connection = True
            self._write_error(InternalError("The server had an error while processing your request."))
        finally:
            if self.after_response is not None:
                self.after_response()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _dispatch

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol-level errors (bad request line, oversized headers) in the OpenAI shape too."""
        self.close_connection = True
        error = GatewayError(message or HTTPStatus(code).phrase)
        error.status, error.type = code, "invalid_request_error"
        self._write_error(error)

    def _read_body(self) -> bytes:
        """The request body; a GatewayError when it cannot be read safely (left unread)."""
        self._unread_body = True
        if self.headers.get("Transfer-Encoding"):
            # Chunked uploads have no length to check up front; OpenAI clients always send one.
            self.close_connection = True
            raise LengthRequired("Chunked request bodies are not supported; send a Content-Length header.")
        raw = self.headers.get("Content-Length")
        if raw is None:
            if self.command in _BODY_METHODS:
                self.close_connection = True  # a body sent without a length would be read as a request
                raise LengthRequired("A Content-Length header is required for request bodies.")
            return b""
        try:
            length = int(raw)
            if length < 0:
                raise ValueError(raw)
        except ValueError:
            self.close_connection = True  # the stream cannot be framed any more
            raise InvalidRequest(f"Invalid Content-Length header: {raw!r}.") from None
        if length > self.max_read_bytes:
            self.close_connection = True  # the body stays unread, so the connection cannot be reused
            raise PayloadTooLarge(
                f"Request body of {length} bytes is larger than this server accepts "
                f"({self.max_read_bytes} bytes)."
            )
        self._unread_body = False
        return self.rfile.read(length) if length else b""

    def _linger(self) -> None:
        """Discard what the client is still sending before closing, briefly and boundedly: closing a
        socket with unread input sends a TCP reset, which can destroy the error response in flight."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_S
            drained = 0
            while drained < LINGER_MAX_BYTES and (left := deadline - time.monotonic()) > 0:
                self.connection.settimeout(left)
                chunk = self.connection.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass  # timed out or reset by the client: nothing more to do

    def _event(self, body: bytes) -> dict[str, Any]:
        path, _, query = self.path.partition("?")
        headers: dict[str, str] = {}
        multi: dict[str, list[str]] = {}
        for name, value in self.headers.items():
            headers[name] = value
            multi.setdefault(name, []).append(value)
        params = dict(parse_qsl(query, keep_blank_values=True)) if query else None
        try:
            text: str | None = body.decode("utf-8") if body else None
            is_b64 = False
        except UnicodeDecodeError:
            # API Gateway would pass binary through as base64; the gateway rejects it as invalid JSON.
            text, is_b64 = base64.b64encode(body).decode("ascii"), True
        return {
            "resource": "/{proxy+}",
            "httpMethod": self.command,
            "path": path,
            "headers": headers,
            "multiValueHeaders": multi,
            "queryStringParameters": params,
            "body": text,
            "isBase64Encoded": is_b64,
            "requestContext": self._request_context(path),
        }

    def _request_context(self, path: str) -> dict[str, Any]:
        """Behind the Lambda Web Adapter, API Gateway's own request context (its request ID ties the
        usage record to the access log); otherwise a fresh one."""
        if self.trust_lambda_context:
            raw = self.headers.get(LAMBDA_CONTEXT_HEADER)
            try:
                context = json.loads(raw) if raw else None
            except ValueError:
                context = None
            if isinstance(context, dict) and context.get("requestId"):
                return context
        return {
            "requestId": str(uuid.uuid4()),
            "stage": self.stage,
            "httpMethod": self.command,
            "path": path,
            "identity": {"sourceIp": self.client_address[0]},
        }

    def _write_proxy_response(self, response: dict[str, Any]) -> None:
        body = response.get("body") or ""
        payload = (
            base64.b64decode(body)
            if response.get("isBase64Encoded")
            else body.encode("utf-8")
            if isinstance(body, str)
            else bytes(body)
        )
        headers = dict(response.get("headers") or {})
        for name, values in (response.get("multiValueHeaders") or {}).items():
            if name not in headers and values:
                headers[name] = values[-1]
        self._write(int(response.get("statusCode", 200)), headers, payload)

    def _write_error(self, exc: GatewayError) -> None:
        headers = {"Content-Type": "application/json", **exc.headers}
        self._write(exc.status, headers, exc.to_json().encode("utf-8"))

    def _write_stream(self, response: StreamingResponse) -> None:
        """Headers at once, then each piece as its own HTTP/1.1 chunk the moment the gateway produces
        it (no buffering: the socket is unbuffered and Nagle is off). A client that hangs up makes a
        write fail: the response is closed, which stops the model call and records its usage."""
        sent = 0
        try:
            self.wfile.write(self._head(response.status, response.headers, "Transfer-Encoding: chunked"))
            for piece in response.body:
                if piece:
                    self.wfile.write(b"%x\r\n%b\r\n" % (len(piece), piece))
                    sent += len(piece)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True  # the client went away mid-stream
        finally:
            response.close()
        if self.access_log:
            self.log_request(response.status, sent)

    def _head(self, status: int, headers: dict[str, str], framing: str) -> bytes:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        lines = [
            f"HTTP/1.1 {status} {phrase}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
        ]
        skip = {"content-length", "connection", "transfer-encoding", "server", "date"}
        lines.extend(f"{k}: {v}" for k, v in headers.items() if k.lower() not in skip)
        lines.append(framing)
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")

    def _write(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        """Status line, headers and body in one write: no Nagle/delayed-ACK stall on keep-alive."""
        head = self._head(status, headers, f"Content-Length: {len(payload)}")
        self.wfile.write(head + payload if self.command != "HEAD" else head)
        if self.access_log:
            self.log_request(status, len(payload))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Shutting down must not wait for idle keep-alive connections held open by clients.
    block_on_close = False
    allow_reuse_address = True
    # socketserver listens with a backlog of 5: a burst of new connections (a test suite's client pool
    # opening at once) would be reset. The kernel caps this at net.core.somaxconn.
    request_queue_size = 512

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log instead of printing a traceback to stderr; a client hanging up is not an error."""
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            return
        log.error("error serving %s", client_address, exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


class GatewayHTTPServer:
    """A gateway served over HTTP on a background thread (``start``) or the calling one
    (``serve_forever``); ``port=0`` picks a free port.

    ``trust_lambda_context``: take the request ID from the Lambda Web Adapter's request-context
    header; only behind the adapter, where clients cannot set that header themselves.
    ``after_response``: called after each response is written (the Lambda server exports its spans).
    """

    def __init__(
        self,
        gateway: ProxyHandler,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        max_body_bytes: int | None = None,
        access_log: bool = False,
        trust_lambda_context: bool = False,
        stage: str = "local",
        after_response: Callable[[], None] | None = None,
    ) -> None:
        max_body = max_body_bytes or GatewayConfig(routes={}).max_body_bytes
        handler = type(
            "BoundGatewayRequestHandler",
            (GatewayRequestHandler,),
            {
                "gateway": gateway,
                "max_read_bytes": HARD_CAP_FACTOR * max_body,
                "access_log": access_log,
                "trust_lambda_context": trust_lambda_context,
                "stage": stage,
                "after_response": staticmethod(after_response) if after_response is not None else None,
            },
        )
        bare_host = host.strip("[]")
        server_cls = _Server6 if ":" in bare_host else _Server
        self.gateway = gateway
        self._httpd = server_cls((bare_host, port), handler)
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> GatewayHTTPServer:
        """Serve on a daemon thread and return self."""
        # A short poll interval only makes shutdown() quicker; serving does not poll.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="aif-gateway-http", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on the calling thread until interrupted."""
        self._httpd.serve_forever()

    def shutdown(self) -> None:
        """Stop serving and close the listening socket."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> GatewayHTTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
