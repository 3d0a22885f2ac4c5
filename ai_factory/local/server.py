"""``ai-factory serve``: the gateway on a laptop, offline, running the same code as the Lambda.

Each HTTP request becomes an API Gateway REST proxy event for ``aif_gateway.app.Gateway.handle``, and
the proxy response is written back. Keys and usage live in SQLite (``sqlite_store``). Only the standard
library is used, with HTTP/1.1 keep-alive and no per-request logging, so the server adds little
overhead of its own to what the gateway does.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl

from ai_factory.local.sqlite_store import SqliteKeyStore, SqliteLedger, default_db_path, default_state_dir
from aif_gateway.config import GatewayConfig
from aif_gateway.errors import GatewayError, InternalError, InvalidRequest, PayloadTooLarge

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
# Bodies above gateway max_body_bytes get the gateway's own 413; bodies above this are refused before
# they are read, so a client cannot make the server buffer an unbounded amount of memory.
HARD_CAP_FACTOR = 2
# The prompt view `ai-factory prompts publish` writes into the state folder; a stat a second is cheap,
# so a newly published view is served at once rather than after the cloud's 60 s.
PROMPT_VIEW_FILE = "prompts.json"
LOCAL_PROMPT_VIEW_TTL_S = 1.0
# Idle keep-alive connections are closed after this many seconds (one thread each).
IDLE_TIMEOUT_S = 120.0
# After refusing a body it did not read, the server drains at most this much for at most this long.
LINGER_S = 0.5
LINGER_MAX_BYTES = 4 * 1024 * 1024
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class ProxyHandler(Protocol):
    """What the server needs from the gateway: the Lambda proxy contract."""

    def handle(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]: ...


class RemoteBindError(ValueError):
    """A non-loopback address was asked for without allow_remote."""


class LengthRequired(GatewayError):
    status = 411
    type = "invalid_request_error"
    code = "length_required"


def is_loopback(host: str) -> bool:
    """True for localhost and loopback IP literals (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_host(host: str, allow_remote: bool) -> None:
    """Refuse to expose the gateway beyond this machine unless asked to explicitly."""
    if not allow_remote and not is_loopback(host):
        raise RemoteBindError(
            f"refusing to listen on {host!r}: local mode binds to loopback only (127.0.0.1, ::1, localhost). "
            "Pass --allow-remote to expose it to other machines; anyone who can reach it can spend your "
            "budget with a valid key and, for Bedrock routes, your AWS credentials."
        )


def build_gateway(
    state_dir: str | os.PathLike[str] | None = None,
    catalog_path: str | os.PathLike[str] | None = None,
    config: GatewayConfig | None = None,
) -> tuple[ProxyHandler, GatewayConfig]:
    """The real gateway over the SQLite stores in ``state_dir`` with the catalog's routes, serving the
    registered prompts of ``<state_dir>/prompts.json`` when that file exists."""
    from aif_gateway.app import Gateway  # deferred: tests may serve a stub without it
    from aif_gateway.prompt_view import PromptViewSource

    if config is None:
        from ai_factory.catalog.model_catalog import ModelCatalog

        config = ModelCatalog.load(catalog_path).gateway_config()
    db = default_db_path(state_dir)
    prompts = PromptViewSource(prompt_view_path(state_dir), ttl_s=LOCAL_PROMPT_VIEW_TTL_S)
    gateway = Gateway(config, keys=SqliteKeyStore(db), ledger=SqliteLedger(db), prompts=prompts)
    return gateway, config


def prompt_view_path(state_dir: str | os.PathLike[str] | None = None) -> Path:
    """``prompts.json`` in ``state_dir`` (default: ``$AI_FACTORY_HOME`` or ``~/.ai-factory``)."""
    folder = Path(state_dir).expanduser() if state_dir else default_state_dir()
    return folder / PROMPT_VIEW_FILE


class _Handler(BaseHTTPRequestHandler):
    """Translates one HTTP exchange into one proxy event. Attributes set on the subclass per server."""

    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "ai-factory-local"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = IDLE_TIMEOUT_S
    gateway: ProxyHandler
    max_read_bytes: int
    access_log: bool = False
    _unread_body: bool = False

    def log_message(self, format: str, *args: Any) -> None:
        if self.access_log:
            log.info("%s - %s", self.address_string(), format % args)

    def _dispatch(self) -> None:
        try:
            response = self.gateway.handle(self._event(self._read_body()), None)
            self._write_proxy_response(response)
        except GatewayError as exc:
            self._write_error(exc)
            if self._unread_body:
                self._linger()
        except ConnectionError:
            self.close_connection = True  # the client went away; nobody to answer
        except Exception:
            log.exception("local gateway failed on %s %s", self.command, self.path)
            self.close_connection = True
            self._write_error(InternalError("The server had an error while processing your request."))

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
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "stage": "local",
                "httpMethod": self.command,
                "path": path,
                "identity": {"sourceIp": self.client_address[0]},
            },
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

    def _write(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        """Status line, headers and body in one write: no Nagle/delayed-ACK stall on keep-alive."""
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
        send_body = self.command != "HEAD"
        lines.append(f"Content-Length: {len(payload)}")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        self.wfile.write(head + payload if send_body else head)
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


class LocalGatewayServer:
    """The local gateway on a background thread; ``port=0`` picks a free port (for tests).

    >>> server = LocalGatewayServer(port=0, state_dir=tmp).start()   # doctest: +SKIP
    >>> server.url                                                     # doctest: +SKIP
    'http://127.0.0.1:54321'
    >>> server.shutdown()                                              # doctest: +SKIP
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        state_dir: str | os.PathLike[str] | None = None,
        catalog_path: str | os.PathLike[str] | None = None,
        *,
        config: GatewayConfig | None = None,
        gateway: ProxyHandler | None = None,
        allow_remote: bool = False,
        access_log: bool = False,
    ) -> None:
        check_host(host, allow_remote)
        if gateway is None:
            gateway, config = build_gateway(state_dir, catalog_path, config)
        max_body = config.max_body_bytes if config else GatewayConfig(routes={}).max_body_bytes
        handler = type(
            "LocalGatewayHandler",
            (_Handler,),
            {"gateway": gateway, "max_read_bytes": HARD_CAP_FACTOR * max_body, "access_log": access_log},
        )
        bare_host = host.strip("[]")
        server_cls = _Server6 if ":" in bare_host else _Server
        self.gateway = gateway
        self.state_dir = Path(state_dir) if state_dir else None
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

    def start(self) -> LocalGatewayServer:
        """Serve on a daemon thread and return self."""
        # A short poll interval only makes shutdown() quicker; serving does not poll.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="aif-local-gateway", daemon=True
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

    def __enter__(self) -> LocalGatewayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    state_dir: str | os.PathLike[str] | None = None,
    catalog_path: str | os.PathLike[str] | None = None,
    *,
    allow_remote: bool = False,
    access_log: bool = False,
) -> None:
    """Run the local gateway in the foreground until Ctrl-C."""
    server = LocalGatewayServer(
        host, port, state_dir, catalog_path, allow_remote=allow_remote, access_log=access_log
    )
    print(f"AI Factory local gateway on {server.url}/v1 (state: {default_db_path(state_dir)})", flush=True)
    if threading.current_thread() is threading.main_thread():
        # Stop cleanly on `kill`, as on Ctrl-C (the database needs no flush, but the socket closes now).
        signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
