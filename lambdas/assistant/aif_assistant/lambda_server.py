"""The deployed backend behind the Lambda Web Adapter (streamed answers), on the gateway's own HTTP
server: ``run.sh`` starts it, the adapter forwards API Gateway's invocation (with the Cognito
authorizer's claims in its request context) to ``127.0.0.1:$AWS_LWA_PORT``."""

from __future__ import annotations

import os

from aif_gateway.http_server import GatewayHTTPServer
from aif_gateway.lambda_server import listen_port

from .app import MAX_BODY_BYTES, AssistantBackend
from .config import KEY_SECRET_ENV, AssistantConfig
from .gateway_client import GatewayClient, secret_key_source


def build_backend() -> AssistantBackend:
    config = AssistantConfig.from_env()
    return AssistantBackend(
        config, GatewayClient(config.gateway_url, secret_key_source(os.environ[KEY_SECRET_ENV]))
    )


def main() -> None:
    server = GatewayHTTPServer(
        build_backend(),
        "127.0.0.1",
        listen_port(),
        max_body_bytes=MAX_BODY_BYTES,
        trust_lambda_context=True,
        stage="lambda",
    )
    server.serve_forever()


if __name__ == "__main__":
    main()
