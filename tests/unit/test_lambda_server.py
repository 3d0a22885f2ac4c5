"""The deployed entry behind the Lambda Web Adapter: ``aif_gateway/run.sh`` starts the gateway's HTTP
server on ``AWS_LWA_PORT`` as the adapter would (a real subprocess), and the server takes API Gateway's
request ID from the adapter's ``x-amzn-request-context`` header."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from conftest import make_config

RUNTIME = Path(__file__).resolve().parents[2] / "lambdas" / "gateway"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_run_sh_serves_the_gateway_where_the_adapter_forwards(tmp_path: Path) -> None:
    config = tmp_path / "gateway_config.json"
    config.write_text(make_config().to_json(), encoding="utf-8")
    port = _free_port()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",  # python3 = this venv's
        "AWS_LWA_PORT": str(port),
        "AIF_CONFIG_PATH": str(config),
        "AIF_KEYS_TABLE": "keys",
        "AIF_USAGE_TABLE": "usage",
        "AIF_FUNCTION_TIMEOUT_S": "600",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "Test",
    }
    env.pop("LAMBDA_TASK_ROOT", None)
    process = subprocess.Popen(
        [str(RUNTIME / "aif_gateway" / "run.sh")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:  # the adapter's readiness check: any HTTP answer on the port
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/")
                ready = conn.getresponse()
                ready.read()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        assert ready.status == 404
        context = {"requestId": "apigw-7f3c", "stage": "prod", "identity": {"sourceIp": "203.0.113.9"}}
        conn.request(
            "POST",
            "/v1/chat/completions",
            body=b'{"model": "echo", "messages": []}',
            headers={"Content-Type": "application/json", "x-amzn-request-context": json.dumps(context)},
        )
        answer = conn.getresponse()
        body = json.loads(answer.read())
        # No key: refused before any store or model call, under API Gateway's request ID.
        assert answer.status == 401 and body["error"]["code"] == "missing_api_key"
        assert answer.getheader("x-request-id") == "apigw-7f3c"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)
