"""The gateway's state: the API-key table, the usage ledger and the spill queues that keep usage records
when a ledger write fails (a replay function drains them back into the ledger).

Both tables are KMS-encrypted with the gateway key, have point-in-time recovery and are retained on
stack deletion. The statements here are the only access the gateway's functions get to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from ai_factory.platform.nag import acknowledge
from ai_factory.platform.secure_defaults import encrypted_queue, via_services
from aif_gateway.contract import KEY_ID_INDEX, REQUEST_ID_INDEX

BACKUP_REASON = (
    "Point-in-time recovery is on: continuous backups, restorable to any second of the last 35 "
    "days, encrypted with the gateway key; the table is retained on stack deletion. An AWS Backup "
    "plan (vaults, cross-account copies, longer retention) is an organisation-level choice, "
    "usually applied by tag through AWS Organizations backup policies."
)


@dataclass(frozen=True)
class UsageLedger:
    """The gateway's tables and spill queues."""

    keys_table: dynamodb.Table
    usage_table: dynamodb.Table
    spill_queue: sqs.Queue
    spill_dead_letter_queue: sqs.Queue


def build_usage_ledger(scope: Construct, key: kms.IKey, *, replay_timeout: Duration) -> UsageLedger:
    """``KeysTable``, ``UsageTable``, ``SpillDeadLetterQueue`` and ``SpillQueue`` in ``scope``.

    ``replay_timeout``: the replay function's timeout (the spill queue's visibility timeout is six times it).
    """
    keys_table = _table(
        scope,
        "KeysTable",
        key,
        partition_key=dynamodb.Attribute(name="key_hash", type=dynamodb.AttributeType.STRING),
    )
    keys_table.add_global_secondary_index(
        index_name=KEY_ID_INDEX,
        partition_key=dynamodb.Attribute(name="key_id", type=dynamodb.AttributeType.STRING),
        projection_type=dynamodb.ProjectionType.ALL,
    )
    usage_table = _table(
        scope,
        "UsageTable",
        key,
        partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
        sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
        time_to_live_attribute="ttl",
    )
    # KEYS_ONLY: feedback reads the record itself with a consistent GetItem; the index stays small.
    usage_table.add_global_secondary_index(
        index_name=REQUEST_ID_INDEX,
        partition_key=dynamodb.Attribute(name="request_id", type=dynamodb.AttributeType.STRING),
        projection_type=dynamodb.ProjectionType.KEYS_ONLY,
    )
    dead_letter_queue = encrypted_queue(
        scope,
        "SpillDeadLetterQueue",
        key=key,
    )
    spill_queue = encrypted_queue(
        scope,
        "SpillQueue",
        key=key,
        # Lambda's guidance: at least six times the consumer's timeout.
        visibility_timeout=Duration.seconds(replay_timeout.to_seconds() * 6),
        dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=5, queue=dead_letter_queue),
    )
    return UsageLedger(keys_table, usage_table, spill_queue, dead_letter_queue)


def read_keys_statement(ledger: UsageLedger) -> iam.PolicyStatement:
    """The gateway's key lookup: read the keys table (no writes, no index)."""
    return iam.PolicyStatement(
        sid="ReadApiKeys",
        actions=["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"],
        resources=[ledger.keys_table.table_arn],
    )


def read_key_records_statements(ledger: UsageLedger, key: kms.IKey) -> list[iam.PolicyStatement]:
    """The edge authorizer's access: one key record by hash (GetItem only), decrypted through DynamoDB."""
    return [
        iam.PolicyStatement(
            sid="GetApiKeyByHash", actions=["dynamodb:GetItem"], resources=[ledger.keys_table.table_arn]
        ),
        iam.PolicyStatement(
            sid="DecryptKeyRecords",
            actions=["kms:Decrypt"],
            resources=[key.key_arn],
            conditions=via_services("dynamodb"),
        ),
    ]


def provision_keys_statements(ledger: UsageLedger, key: kms.IKey) -> list[iam.PolicyStatement]:
    """What a key provisioner needs: write key records, find them by ID, the key through DynamoDB only."""
    return [
        iam.PolicyStatement(
            sid="WriteKeyRecords",
            actions=["dynamodb:PutItem", "dynamodb:UpdateItem"],
            resources=[ledger.keys_table.table_arn],
        ),
        iam.PolicyStatement(
            sid="FindKeyById",
            actions=["dynamodb:Query"],
            resources=[f"{ledger.keys_table.table_arn}/index/{KEY_ID_INDEX}"],
        ),
        iam.PolicyStatement(
            sid="UseGatewayKeyThroughDynamoDb",
            actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
            resources=[key.key_arn],
            conditions=via_services("dynamodb"),
        ),
    ]


def spill_statement(ledger: UsageLedger) -> iam.PolicyStatement:
    """Send usage records to the spill queue when the ledger write fails."""
    return iam.PolicyStatement(
        sid="SpillUsageRecords",
        actions=["sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"],
        resources=[ledger.spill_queue.queue_arn],
    )


def find_by_request_id_statement(ledger: UsageLedger) -> iam.PolicyStatement:
    """Query the usage table's request-id index (``POST /v1/feedback``)."""
    return iam.PolicyStatement(
        sid="FindUsageByRequestId",
        actions=["dynamodb:Query"],
        resources=[f"{ledger.usage_table.table_arn}/index/{REQUEST_ID_INDEX}"],
    )


def usage_write_statements(ledger: UsageLedger, key: kms.IKey) -> list[iam.PolicyStatement]:
    """Write the usage ledger, and use the gateway key only through DynamoDB and SQS."""
    return [
        iam.PolicyStatement(
            sid="ReadWriteUsageLedger",
            actions=[
                "dynamodb:BatchGetItem",
                "dynamodb:ConditionCheckItem",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:Query",
                "dynamodb:UpdateItem",
            ],
            resources=[ledger.usage_table.table_arn],
        ),
        iam.PolicyStatement(
            sid="UseGatewayKeyThroughDynamoDbAndSqs",
            actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
            resources=[key.key_arn],
            conditions=via_services("dynamodb", "sqs"),
        ),
    ]


def acknowledge_backups(ledger: UsageLedger) -> None:
    """Both tables: point-in-time recovery instead of an AWS Backup plan (an organisation's choice)."""
    for table in (ledger.keys_table, ledger.usage_table):
        acknowledge(table.node.default_child or table, {"NIST.800.53.R5-DynamoDBInBackupPlan": BACKUP_REASON})


def acknowledge_spill_path(ledger: UsageLedger, replay_function: lambda_.Function) -> None:
    """The replay's SQS mapping (its failure path is the redrive policy) and the end of the redrive chain."""
    mapping = next(c for c in replay_function.node.find_all() if isinstance(c, lambda_.CfnEventSourceMapping))
    acknowledge(
        mapping,
        {
            "Serverless-LambdaEventSourceMappingDestination": (
                "Lambda supports on-failure destinations only for stream and Kafka event sources; "
                "for SQS the queue's redrive policy is the failure path: after five receives a "
                "spilled record moves to the KMS-encrypted spill dead-letter queue (14 days)."
            )
        },
    )
    acknowledge(
        ledger.spill_dead_letter_queue.node.default_child or ledger.spill_dead_letter_queue,
        {
            "Serverless-SQSRedrivePolicy": (
                "This queue is the spill queue's dead-letter queue, the end of the redrive chain; "
                "its messages are kept 14 days for replay."
            )
        },
    )


def _table(scope: Construct, construct_id: str, key: kms.IKey, **props: Any) -> dynamodb.Table:
    return dynamodb.Table(
        scope,
        construct_id,
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
        encryption_key=key,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        removal_policy=RemovalPolicy.RETAIN,
        **props,
    )
