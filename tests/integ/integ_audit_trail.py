"""Integration test: a gateway request's audit record lands in the write-once audit bucket.

Deploys the gateway stack (with its audit trail: log subscription, Firehose, Object Lock bucket) and a
client; sends one request and waits for Firehose to deliver the audit record (its buffer flushes
within minutes). This proves the delivery into the Object Lock bucket works.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk.integ_tests_alpha import ExpectedResult, IntegTest, Match
from support import allow, gateway_with_client, new_app

app = new_app()
gateway, test_stack, smoke = gateway_with_client(app, "AifIntegAuditGateway", "AifIntegAuditClient")

integ = IntegTest(app, "AuditTrailTest", test_cases=[gateway, test_stack], stack_update_workflow=False)
request = smoke.send(integ)
request.expect(ExpectedResult.object_like({"Payload": Match.object_like({"status": 200})}))

bucket = gateway.audit_trail.bucket
delivered = integ.assertions.aws_api_call("S3", "listObjectsV2", {"Bucket": bucket.bucket_name})
allow(delivered, ["s3:ListBucket"], [bucket.bucket_arn])
delivered.expect(
    ExpectedResult.object_like(
        {"Contents": Match.array_with([Match.object_like({"Key": Match.string_like_regexp(".+")})])}
    )
)
delivered.wait_for_assertions(total_timeout=cdk.Duration.minutes(15), interval=cdk.Duration.minutes(1))
request.next(delivered)
app.synth()
