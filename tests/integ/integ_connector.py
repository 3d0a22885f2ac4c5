"""Integration test: a file dropped in the raw zone becomes a curated object and a lineage event.

Deploys the governance stack (data lake, the support tickets dataset and its connector); puts a CSV file
of two tickets under the connector's raw prefix; waits for the curated object under the dataset's prefix
and for the OpenLineage run event under the connector's lineage prefix.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk.integ_tests_alpha import ExpectedResult, IntegTest, Match
from support import allow, new_app

from stacks.governance_stack import GovernanceStack

app = new_app()
governance = GovernanceStack(app, "AifIntegGovernance", description="AI Factory integration test: governance")
connector = governance.connectors["support.tickets"]

TICKETS = (
    "ticket_id,created_at,subject,body,product,priority\n"
    "T-1,2026-12-01T09:00:00Z,Login fails,Customer jane@example.com cannot log in,portal,high\n"
    "T-2,2026-12-01T09:05:00Z,Invoice,Where is my invoice?,billing,low\n"
)

integ = IntegTest(app, "ConnectorTest", test_cases=[governance], stack_update_workflow=False)
drop = integ.assertions.aws_api_call(
    "S3",
    "putObject",
    {
        "Bucket": connector.raw_bucket.bucket_name,
        "Key": f"{connector.raw_prefix}integ/tickets.csv",
        "Body": TICKETS,
    },
)
allow(drop, ["s3:PutObject"], [connector.raw_bucket.arn_for_objects("*")])
allow(drop, ["kms:GenerateDataKey", "kms:Encrypt"])


def listed(bucket: object, prefix: str, what: str) -> object:
    call = integ.assertions.aws_api_call(
        "S3",
        "listObjectsV2",
        {"Bucket": bucket.bucket_name, "Prefix": prefix},  # type: ignore[attr-defined]
    )
    allow(call, ["s3:ListBucket"], [bucket.bucket_arn])  # type: ignore[attr-defined]
    call.expect(
        ExpectedResult.object_like(
            {"Contents": Match.array_with([Match.object_like({"Key": Match.string_like_regexp(what)})])}
        )
    )
    call.wait_for_assertions(total_timeout=cdk.Duration.minutes(10), interval=cdk.Duration.seconds(30))
    return call


curated = listed(connector.curated_bucket, connector.curated_prefix, ".+")
lineage = listed(connector.lineage_bucket, connector.lineage_prefix, ".+")
drop.next(curated).next(lineage)  # type: ignore[attr-defined]
app.synth()
