"""The gateway's usage recovery: a scheduled Lambda that re-delivers audited records the ledger lacks.

Every 5 minutes ``aif_gateway.usage_recovery`` reads the gateway function's ledger-bound ``audit`` lines
of the 10 minutes that ended 5 minutes ago (``FilterLogEvents``), checks which records the usage table
holds (``BatchGetItem``) and sends the others to the spill queue, whose replay function writes them.
A record an environment took with it when it ended without SIGTERM is in the ledger within 10 minutes
(docs/gateway.md, "What makes the write after the response safe").

Why a schedule and not a subscription filter: CloudWatch Logs allows two subscription filters per log
group and the ``AuditTrail`` already uses one on this log group; a subscription also fires within seconds,
before the write-behind has written, so it would re-deliver nearly every record. A scheduled read spends
no filter and checks only lines old enough to have been written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from ai_factory.constructs.gateway.usage_ledger import UsageLedger
from ai_factory.platform.nag import acknowledge
from ai_factory.platform.secure_defaults import encrypted_queue, via_services
from aif_gateway import contract
from aif_gateway.usage_recovery import DEFAULT_LAG_S, DEFAULT_WINDOW_S, SCHEDULE_S

TIMEOUT = Duration.minutes(4)
"""Shorter than the schedule, so runs do not overlap (overlap would be harmless: both are idempotent)."""
RETRY_ATTEMPTS = 2
"""Lambda retries a failed run twice (about 1 and 2 minutes later), then keeps its event in the DLQ."""


@dataclass(frozen=True)
class UsageRecovery:
    """The recovery function, its schedule and the dead-letter queue of runs that failed."""

    function: lambda_.Function
    schedule: events.Rule
    dead_letter_queue: sqs.Queue


def dead_letter_queue(scope: Construct, key: kms.IKey) -> sqs.Queue:
    """Failed recovery runs (their scheduled events, which say their window), kept 14 days for a re-run."""
    queue = encrypted_queue(
        scope,
        "UsageRecoveryDeadLetterQueue",
        key=key,
    )
    acknowledge(
        queue.node.default_child or queue,
        {
            "Serverless-SQSRedrivePolicy": (
                "This queue is the usage recovery's dead-letter queue, the end of its failure chain: a "
                "recovery run that failed after Lambda's retries is kept here 14 days (with its scheduled "
                "event, which names its window) and raises the usage-recovery alarm."
            )
        },
    )
    return queue


def failure_handling(dlq: sqs.IQueue) -> dict[str, Any]:
    """The function's asynchronous-invocation settings: two retries within an hour, then the Lambda
    dead-letter queue (the scheduled event, which names the run's window, with the error in its
    ``ErrorMessage`` attribute). A DLQ rather than an on-failure destination: CDK's destination grants
    the role every KMS action on the key, the DLQ only ``sqs:SendMessage`` (KMS use is granted through
    SQS in ``statements``)."""
    return {"dead_letter_queue": dlq, "retry_attempts": RETRY_ATTEMPTS, "max_event_age": Duration.hours(1)}


def acknowledge_design(recovery: UsageRecovery) -> None:
    """A dead-letter queue instead of an on-failure destination; the DLQ as the end of its chain."""
    config = recovery.function.node.try_find_child("EventInvokeConfig")
    acknowledge(
        config or recovery.function,
        {
            "Serverless-LambdaAsyncFailureDestination": (
                "A failed run goes, after 2 retries or an hour, to the function's dead-letter queue (KMS, "
                "14 days) with its scheduled event and the error (ErrorMessage attribute); that queue "
                "raises the usage-recovery alarm. An on-failure destination would duplicate it and, as CDK "
                "grants it, give the role every KMS action on the gateway key."
            )
        },
    )
    acknowledge(
        recovery.dead_letter_queue.node.default_child or recovery.dead_letter_queue,
        {
            "AwsSolutions-SQS3": (
                "This queue is itself a dead-letter queue (the usage recovery function's and its "
                "EventBridge target's), the end of the failure chain; its messages are kept 14 days for a "
                "re-run and raise the usage-recovery alarm."
            )
        },
    )


def environment(ledger: UsageLedger, gateway_log_group: logs.ILogGroup) -> dict[str, str]:
    """What the recovery function reads: the gateway's log group, the usage table, the spill queue."""
    return {
        contract.GATEWAY_LOG_GROUP_ENV: gateway_log_group.log_group_name,
        contract.USAGE_TABLE_ENV: ledger.usage_table.table_name,
        contract.SPILL_QUEUE_URL_ENV: ledger.spill_queue.queue_url,
        contract.RECOVERY_LAG_S_ENV: str(DEFAULT_LAG_S),
        contract.RECOVERY_WINDOW_S_ENV: str(DEFAULT_WINDOW_S),
    }


def statements(
    ledger: UsageLedger, key: kms.IKey, gateway_log_group: logs.ILogGroup
) -> list[iam.PolicyStatement]:
    """Least privilege: read the gateway's log group, look up ledger items by key, send to the spill queue.

    CloudWatch Logs decrypts its KMS-encrypted events itself (the key policy allows the logs service), so
    reading them needs no KMS grant; DynamoDB reads and SQS sends use the gateway key through those
    services only."""
    return [
        iam.PolicyStatement(
            sid="ReadGatewayAuditLines",
            actions=["logs:FilterLogEvents"],
            resources=[gateway_log_group.log_group_arn],
        ),
        iam.PolicyStatement(
            sid="LookUpLedgerRecords",
            actions=["dynamodb:BatchGetItem"],
            resources=[ledger.usage_table.table_arn],
            # Only audit records (LEDGER#...): not the gates, the feedback or anything else in the table.
            conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["LEDGER#*"]}},
        ),
        iam.PolicyStatement(
            sid="RedeliverToSpillQueue",
            actions=["sqs:SendMessage"],
            resources=[ledger.spill_queue.queue_arn],
        ),
        iam.PolicyStatement(
            sid="UseGatewayKeyThroughDynamoDbAndSqs",
            actions=["kms:Decrypt", "kms:GenerateDataKey"],
            resources=[key.key_arn],
            conditions=via_services("dynamodb", "sqs"),
        ),
    ]


def schedule(
    scope: Construct, function: lambda_.IFunction, dlq: sqs.IQueue, key: kms.IKey, rule_name: str
) -> events.Rule:
    """Every ``SCHEDULE_S`` seconds; an event EventBridge cannot deliver goes to the same DLQ.

    The DLQ is encrypted with ``key``, so EventBridge may use the key for this rule only. ``rule_name``
    is fixed (unique per gateway) because the key policy names the rule's ARN: a reference to the rule
    would be a dependency cycle (key -> rule -> function -> log group -> key)."""
    rule_arn = Stack.of(scope).format_arn(service="events", resource="rule", resource_name=rule_name)
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid="AllowEventBridgeUsageRecoveryDeadLetters",
            principals=[iam.ServicePrincipal("events.amazonaws.com")],
            actions=["kms:Decrypt", "kms:GenerateDataKey"],
            resources=["*"],  # in a key policy, "*" is this key
            conditions={"ArnEquals": {"aws:SourceArn": rule_arn}},
        )
    )
    return events.Rule(
        scope,
        "UsageRecoverySchedule",
        rule_name=rule_name,
        description="AI Factory gateway: usage recovery every 5 minutes (audit lines -> ledger)",
        schedule=events.Schedule.rate(Duration.seconds(SCHEDULE_S)),
        targets=[
            targets.LambdaFunction(
                function,
                dead_letter_queue=dlq,
                retry_attempts=RETRY_ATTEMPTS,
                max_event_age=Duration.hours(1),
            )
        ],
    )


def failures_metric(
    recovery: UsageRecovery, ledger: UsageLedger, period: Duration | None = None
) -> cloudwatch.IMetric:
    """Failed recovery runs, runs waiting in the recovery's dead-letter queue and records waiting in the
    spill dead-letter queue (what the replay could not write): 0 when every record reaches the ledger.
    ``period``: default 5 minutes, the recovery's schedule."""
    period = period or Duration.seconds(SCHEDULE_S)
    return cloudwatch.MathExpression(
        expression="FILL(errors, 0) + FILL(dlq, 0) + FILL(spilled, 0)",
        using_metrics={
            "errors": recovery.function.metric_errors(period=period, statistic="Sum"),
            "dlq": recovery.dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=period, statistic="Maximum"
            ),
            "spilled": ledger.spill_dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=period, statistic="Maximum"
            ),
        },
        label="usage recovery failures",
        period=period,
    )
