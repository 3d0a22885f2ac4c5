"""Integration test: the gateway answers a provisioned key, writes the ledger and publishes its metric.

Deploys the gateway stack and a test stack with one feature (its API key provisioned by the feature's
custom resource) and a client Lambda; then calls the API with the key and checks the answer, the
feature's usage counter in the ledger, and the feature's ``Requests`` metric in CloudWatch.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk.integ_tests_alpha import ExpectedResult, IntegTest, Match
from support import FEATURE, MODEL, TEAM, allow, gateway_with_client, new_app

app = new_app()
gateway, test_stack, smoke = gateway_with_client(app, "AifIntegGateway", "AifIntegGatewayClient")

integ = IntegTest(app, "GatewayTest", test_cases=[gateway, test_stack], stack_update_workflow=False)

# 1. The answer: HTTP 200 with the echo model's chat completion.
answer = smoke.send(integ)
answer.expect(
    ExpectedResult.object_like(
        {
            "Payload": Match.object_like(
                {"status": 200, "body": Match.object_like({"object": "chat.completion", "model": MODEL})}
            )
        }
    )
)

# 2. The usage table: the feature's monthly gate (reservations and settled spend) exists after one request.
ledger = integ.assertions.aws_api_call(
    "DynamoDB",
    "query",
    {
        "TableName": gateway.gateway.usage_table.table_name,
        "KeyConditionExpression": "pk = :pk AND begins_with(sk, :month)",
        "ExpressionAttributeValues": {":pk": {"S": f"GATE#{TEAM}#{FEATURE}"}, ":month": {"S": "MONTH#"}},
    },
)
allow(ledger, ["dynamodb:Query"], [gateway.gateway.usage_table.table_arn])
allow(ledger, ["kms:Decrypt"])
ledger.expect(ExpectedResult.object_like({"Count": 1}))

# 3. The metric: the feature's Requests metric appears (EMF metrics take minutes to be listed).
requests = smoke.feature.metric_requests()
metric = integ.assertions.aws_api_call(
    "CloudWatch",
    "listMetrics",
    {
        "Namespace": requests.namespace,
        "MetricName": requests.metric_name,
        "Dimensions": [{"Name": k, "Value": v} for k, v in (requests.dimensions or {}).items()],
    },
)
metric.expect(
    ExpectedResult.object_like({"Metrics": Match.array_with([Match.object_like({"MetricName": "Requests"})])})
)
metric.wait_for_assertions(total_timeout=cdk.Duration.minutes(20), interval=cdk.Duration.minutes(1))

answer.next(ledger).next(metric)
app.synth()
