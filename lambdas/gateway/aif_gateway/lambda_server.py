"""The deployed gateway behind the Lambda Web Adapter: the same HTTP server as ``ai-factory serve``.

Python Lambda runtimes cannot stream a response themselves. The Lambda Web Adapter layer (an extension
plus the ``/opt/bootstrap`` exec wrapper) runs the function's handler, ``run.sh``, which starts this
module; the adapter then turns each API Gateway invocation into an HTTP request to
``127.0.0.1:$AWS_LWA_PORT`` and, with ``AWS_LWA_INVOKE_MODE=response_stream``, streams the response
back as the server writes it. The gateway is built as ``handler.build_gateway`` builds it (DynamoDB
stores, spill queue, EMF metrics, audit log) from the same environment variables, plus
``AIF_FUNCTION_TIMEOUT_S`` for the request deadline (docs/gateway.md, "Deployed streaming").

Usage records are written after each response (``usage_writer``): a request's one synchronous write is
its reservation. The adapter is a Lambda extension, so when Lambda ends the environment it first sends
this process SIGTERM and allows it about 300 ms: ``main`` then drains the pending records and gate
settlements (``SHUTDOWN_DRAIN_S``) and logs in full whatever did not make it.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

from . import contract
from .http_server import GatewayHTTPServer

DEFAULT_PORT = 8080  # the adapter's default, when AWS_LWA_PORT (or PORT) is not set
# Lambda gives the runtime process about 300 ms after SIGTERM when an external extension (the adapter)
# is registered; leave some for the exit itself.
SHUTDOWN_DRAIN_S = 0.25


def listen_port(environ: dict[str, str] | None = None) -> int:
    """The port the adapter forwards to: ``AWS_LWA_PORT``, else ``PORT``, else 8080 (its own rule)."""
    env = os.environ if environ is None else environ
    raw = env.get(contract.LWA_PORT_ENV) or env.get("PORT") or str(DEFAULT_PORT)
    try:
        port = int(raw)
    except ValueError:
        raise ValueError(f"{contract.LWA_PORT_ENV} must be a port number, got {raw!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"{contract.LWA_PORT_ENV} must be a port number, got {port}")
    return port


def build_server(port: int | None = None) -> GatewayHTTPServer:
    """The gateway with its AWS stores, on loopback (only the adapter in the same sandbox calls it)."""
    from . import trace_export
    from .handler import build_gateway  # Powertools comes from its Lambda layer; configures tracing

    gateway = build_gateway(write_behind=True)
    return GatewayHTTPServer(
        gateway,
        "127.0.0.1",
        listen_port() if port is None else port,
        max_body_bytes=gateway.config.max_body_bytes,
        trust_lambda_context=True,
        stage="lambda",
        # The response is out; export its spans before Lambda freezes the environment.
        after_response=trace_export.flush,
    )


def drain_on_sigterm(server: GatewayHTTPServer, drain_s: float = SHUTDOWN_DRAIN_S) -> None:
    """On SIGTERM: write what is pending (at most ``drain_s``), then exit."""

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        drain = getattr(server.gateway, "drain", None)
        if drain is not None:
            drain(drain_s)
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_sigterm)


def main() -> None:
    server = build_server()
    drain_on_sigterm(server)
    server.serve_forever()


if __name__ == "__main__":
    main()
