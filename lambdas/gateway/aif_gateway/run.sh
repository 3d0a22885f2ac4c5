#!/bin/sh
# Lambda handler under the Lambda Web Adapter (AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap runs this):
# the gateway's own HTTP server on $AWS_LWA_PORT. The function's code root holds the aif_gateway package.
cd "${LAMBDA_TASK_ROOT:-$(dirname "$0")/..}" || exit 1
exec python3 -m aif_gateway.lambda_server
