"""The local server's HTTP <-> proxy-event translation, against a stub with the gateway's contract."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from ai_factory.cli.main import main
from ai_factory.local.server import LocalGatewayServer, RemoteBindError, check_host, is_loopback


class StubGateway:
    """Records events; answers what ``reply`` says (or raises it)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.reply: dict[str, Any] | Exception = {"statusCode": 200, "headers": {}, "body": "{}"}
        self.lock = threading.Lock()

    def handle(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        with self.lock:
            self.events.append(event)
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply


@pytest.fixture
def stub() -> StubGateway:
    return StubGateway()


@pytest.fixture
def server(stub: StubGateway) -> Iterator[LocalGatewayServer]:
    srv = LocalGatewayServer("127.0.0.1", 0, gateway=stub).start()
    yield srv
    srv.shutdown()


def request(
    srv: LocalGatewayServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def test_event_shape(server: LocalGatewayServer, stub: StubGateway) -> None:
    body = json.dumps({"model": "echo", "messages": []}).encode()
    request(
        server,
        "POST",
        "/v1/chat/completions?a=1&b=two&b=three&empty=",
        body,
        {"Authorization": "Bearer k", "Content-Type": "application/json", "X-Custom": "v"},
    )
    (event,) = stub.events
    assert event["httpMethod"] == "POST"
    assert event["path"] == "/v1/chat/completions"
    assert event["queryStringParameters"] == {"a": "1", "b": "three", "empty": ""}
    assert event["headers"]["Authorization"] == "Bearer k"
    assert event["headers"]["X-Custom"] == "v"
    assert event["body"] == body.decode()
    assert event["isBase64Encoded"] is False
    ctx = event["requestContext"]
    assert ctx["stage"] == "local"
    assert ctx["identity"]["sourceIp"] == "127.0.0.1"
    assert len(ctx["requestId"]) == 36


def test_request_ids_are_fresh_and_get_has_no_body(server: LocalGatewayServer, stub: StubGateway) -> None:
    request(server, "GET", "/v1/models")
    request(server, "GET", "/v1/models")
    assert stub.events[0]["body"] is None and stub.events[0]["queryStringParameters"] is None
    assert stub.events[0]["requestContext"]["requestId"] != stub.events[1]["requestContext"]["requestId"]


def test_response_status_headers_and_body(server: LocalGatewayServer, stub: StubGateway) -> None:
    stub.reply = {
        "statusCode": 429,
        "headers": {"Content-Type": "application/json", "Retry-After": "7", "Content-Length": "999"},
        "body": '{"error": {"message": "slow down \\u00e9"}}',
        "isBase64Encoded": False,
    }
    status, headers, data = request(server, "GET", "/v1/models")
    assert status == 429
    assert headers["retry-after"] == "7"
    assert headers["content-length"] == str(len(data))  # ours, not the stub's
    assert json.loads(data)["error"]["message"] == "slow down é"


def test_base64_response_is_decoded(server: LocalGatewayServer, stub: StubGateway) -> None:
    stub.reply = {
        "statusCode": 200,
        "headers": {},
        "body": base64.b64encode(b"\x00\x01").decode(),
        "isBase64Encoded": True,
    }
    assert request(server, "GET", "/x")[2] == b"\x00\x01"


def test_non_utf8_body_is_passed_as_base64(server: LocalGatewayServer, stub: StubGateway) -> None:
    request(server, "POST", "/v1/embeddings", b"\xff\xfe")
    assert stub.events[0]["isBase64Encoded"] is True
    assert base64.b64decode(stub.events[0]["body"]) == b"\xff\xfe"


def test_exception_becomes_generic_500_without_traceback(
    server: LocalGatewayServer, stub: StubGateway, caplog: pytest.LogCaptureFixture
) -> None:
    stub.reply = RuntimeError("secret internals /etc/passwd")
    with caplog.at_level(logging.ERROR, logger="aif_gateway.http_server"):
        status, _, data = request(server, "GET", "/v1/models")
    assert status == 500
    error = json.loads(data)["error"]
    assert error["type"] == "server_error"
    assert "secret" not in data.decode() and "Traceback" not in data.decode()
    assert "secret internals" in caplog.text  # logged server side


def test_hard_cap_is_twice_the_gateway_limit(server: LocalGatewayServer, stub: StubGateway) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.putrequest("POST", "/v1/chat/completions")
    conn.putheader("Content-Length", str(2_000_001))
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 413
    assert json.loads(resp.read())["error"]["code"] == "request_too_large"
    assert stub.events == []
    status, _, _ = request(server, "POST", "/v1/chat/completions", b"x" * 1_500_000)
    assert status == 200  # under the cap: read and handed to the gateway, which applies its own limit
    assert len(stub.events[0]["body"]) == 1_500_000


def test_chunked_upload_is_refused(server: LocalGatewayServer, stub: StubGateway) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("POST", "/v1/chat/completions", body=iter([b"{}"]), encode_chunked=True)
    resp = conn.getresponse()
    assert resp.status == 411
    assert json.loads(resp.read())["error"]["code"] == "length_required"
    assert stub.events == []


def test_concurrent_clients(server: LocalGatewayServer, stub: StubGateway) -> None:
    results: list[int] = []

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        for _ in range(20):
            conn.request("POST", "/v1/chat/completions", body=b"{}")
            resp = conn.getresponse()
            resp.read()
            results.append(resp.status)
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 160
    assert len({e["requestContext"]["requestId"] for e in stub.events}) == 160


def test_shutdown_does_not_wait_for_idle_keep_alive_connections(stub: StubGateway) -> None:
    srv = LocalGatewayServer("127.0.0.1", 0, gateway=stub).start()
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    conn.request("GET", "/v1/models")
    conn.getresponse().read()  # the connection stays open
    done = threading.Event()

    def stop() -> None:
        srv.shutdown()
        done.set()

    threading.Thread(target=stop, daemon=True).start()
    assert done.wait(5)
    conn.close()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("0.0.0.0", False), ("192.168.1.5", False), ("example.com", False), ("::", False)],
)  # fmt: skip
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_non_loopback_needs_allow_remote(stub: StubGateway) -> None:
    with pytest.raises(RemoteBindError, match="--allow-remote"):
        LocalGatewayServer("0.0.0.0", 0, gateway=stub)
    check_host("0.0.0.0", allow_remote=True)  # no error


def test_serve_command_refuses_remote_host(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "--host" in err and "refusing to listen on '0.0.0.0'" in err and "--allow-remote" in err


def test_serve_command_rejects_bad_port(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--port", "70000"]) == 2
    assert "--port must be between 0 and 65535" in capsys.readouterr().err


def test_a_burst_of_new_connections_is_not_reset(server: LocalGatewayServer) -> None:
    """64 connections opened at the same instant all get an answer (socketserver's default listen
    backlog of 5 made the kernel reset most of them)."""
    import socket

    start = threading.Barrier(64)
    results: list[str] = []

    def one() -> None:
        start.wait()
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                results.append("ok" if sock.recv(64).startswith(b"HTTP/1.1 ") else "bad answer")
        except OSError as exc:
            results.append(type(exc).__name__)

    threads = [threading.Thread(target=one) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results.count("ok") == 64, sorted(set(results))


def test_lambda_web_adapter_request_context_is_used_only_when_trusted(stub: StubGateway) -> None:
    from aif_gateway.http_server import GatewayHTTPServer

    context = {"requestId": "apigw-req-1", "stage": "prod", "identity": {"sourceIp": "203.0.113.9"}}
    headers = {"x-amzn-request-context": json.dumps(context)}
    with GatewayHTTPServer(stub, "127.0.0.1", 0, trust_lambda_context=True) as behind_adapter:
        conn = http.client.HTTPConnection("127.0.0.1", behind_adapter.port, timeout=10)
        conn.request("GET", "/v1/models", headers=headers)
        conn.getresponse().read()
    assert stub.events[-1]["requestContext"] == context
    with LocalGatewayServer("127.0.0.1", 0, gateway=stub) as local:
        conn = http.client.HTTPConnection("127.0.0.1", local.port, timeout=10)
        conn.request("GET", "/v1/models", headers=headers)
        conn.getresponse().read()
    assert stub.events[-1]["requestContext"]["requestId"] != "apigw-req-1"  # a client cannot set it locally


def test_lambda_server_listens_where_the_adapter_forwards() -> None:
    from aif_gateway.lambda_server import listen_port

    assert listen_port({}) == 8080
    assert listen_port({"PORT": "9000"}) == 9000
    assert listen_port({"AWS_LWA_PORT": "8123", "PORT": "9000"}) == 8123
    with pytest.raises(ValueError, match="AWS_LWA_PORT must be a port number"):
        listen_port({"AWS_LWA_PORT": "http"})
