#!/bin/sh
# Lambda handler under the Lambda Web Adapter (AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap runs this): the
# assistant backend on the gateway's HTTP server at $AWS_LWA_PORT. The code root holds aif_assistant
# and aif_gateway.
cd "${LAMBDA_TASK_ROOT:-$(dirname "$0")/..}" || exit 1
exec python3 -m aif_assistant.lambda_server
