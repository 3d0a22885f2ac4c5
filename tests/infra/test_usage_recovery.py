"""LlmGateway's usage recovery: schedule, least-privilege IAM, KMS, dead-letter queue and alarm metric."""

from __future__ import annotations

from typing import Any

from aif_gateway.usage_recovery import DEFAULT_LAG_S, DEFAULT_WINDOW_S, FILTER_PATTERN, SCHEDULE_S
from tests.infra.test_llm_gateway import Synthesized, arn_of, as_list, only, ref, statements

HANDLER = "aif_gateway.usage_recovery.handler"


def _recovery_statements(syn: Synthesized) -> list[dict[str, Any]]:
    role = syn.gateway.usage_recovery.function.role
    policies = syn.template.find_resources(
        "AWS::IAM::Policy", {"Properties": {"Roles": [ref(syn, role)]}}
    ).values()
    return [s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]]


def test_recovery_runs_every_five_minutes_with_retries_and_a_dead_letter_queue(
    default_gateway: Synthesized,
) -> None:
    syn = default_gateway
    recovery = syn.gateway.usage_recovery
    fn = only(syn, "AWS::Lambda::Function", {"Handler": HANDLER})
    rule = only(syn, "AWS::Events::Rule", {"ScheduleExpression": "rate(5 minutes)"})["Properties"]
    assert SCHEDULE_S == 300 and rule["State"] == "ENABLED"
    [target] = rule["Targets"]
    assert target["Arn"] == arn_of(syn, recovery.function)
    assert target["DeadLetterConfig"] == {"Arn": arn_of(syn, recovery.dead_letter_queue)}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 2
    # EventBridge may use the gateway key for this rule's dead letters only.
    assert rule["Name"] == f"ai-factory-usage-recovery-{syn.gateway.edge_namespace}"
    key_policy = syn.template.to_json()["Resources"][
        syn.stack.get_logical_id(syn.gateway.key.node.default_child)
    ]
    [grant] = [
        s
        for s in key_policy["Properties"]["KeyPolicy"]["Statement"]
        if s.get("Principal") == {"Service": "events.amazonaws.com"}
    ]
    assert sorted(as_list(grant["Action"])) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert syn.resolve(grant["Condition"]["ArnEquals"]["aws:SourceArn"]) == syn.resolve(
        syn.stack.format_arn(service="events", resource="rule", resource_name=rule["Name"])
    )
    # A failed run (EventBridge invokes asynchronously) is retried twice, then kept with its event.
    config = only(syn, "AWS::Lambda::EventInvokeConfig", {"FunctionName": ref(syn, recovery.function)})
    assert config["Properties"]["MaximumRetryAttempts"] == 2
    assert config["Properties"]["MaximumEventAgeInSeconds"] == 3600
    assert fn["Properties"]["DeadLetterConfig"] == {"TargetArn": arn_of(syn, recovery.dead_letter_queue)}
    # Shorter than the schedule; runs never pile up.
    assert fn["Properties"]["Timeout"] < SCHEDULE_S


def test_recovery_reads_the_gateway_log_group_and_redelivers_into_the_spill_queue(
    default_gateway: Synthesized,
) -> None:
    syn = default_gateway
    env = only(syn, "AWS::Lambda::Function", {"Handler": HANDLER})["Properties"]["Environment"]["Variables"]
    assert env == {
        "AIF_GATEWAY_LOG_GROUP": ref(syn, syn.gateway.function.log_group),
        "AIF_USAGE_TABLE": ref(syn, syn.gateway.usage_table),
        "AIF_SPILL_QUEUE_URL": ref(syn, syn.gateway.spill_queue),
        "AIF_RECOVERY_LAG_S": str(DEFAULT_LAG_S),
        "AIF_RECOVERY_WINDOW_S": str(DEFAULT_WINDOW_S),
    }
    # The records it re-delivers are replayed by the spill queue's existing consumer.
    mapping = only(syn, "AWS::Lambda::EventSourceMapping")["Properties"]
    assert mapping["EventSourceArn"] == arn_of(syn, syn.gateway.spill_queue)
    assert FILTER_PATTERN == '{ ($.message = "audit") && ($.ledger IS TRUE) }'
    # No subscription filter of its own: the audit trail may keep one of the log group's two.
    assert syn.template.find_resources("AWS::Logs::SubscriptionFilter") == {}


def test_recovery_role_is_least_privilege(default_gateway: Synthesized) -> None:
    syn = default_gateway
    by_sid = {s.get("Sid"): s for s in _recovery_statements(syn)}
    logs_read = by_sid["ReadGatewayAuditLines"]
    assert as_list(logs_read["Action"]) == ["logs:FilterLogEvents"]
    assert logs_read["Resource"] == syn.resolve(syn.gateway.function.log_group.log_group_arn)
    lookup = by_sid["LookUpLedgerRecords"]
    assert as_list(lookup["Action"]) == ["dynamodb:BatchGetItem"]
    assert lookup["Resource"] == arn_of(syn, syn.gateway.usage_table)
    assert lookup["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["LEDGER#*"]}}
    send = by_sid["RedeliverToSpillQueue"]
    assert as_list(send["Action"]) == ["sqs:SendMessage"] and send["Resource"] == arn_of(
        syn, syn.gateway.spill_queue
    )
    kms = by_sid["UseGatewayKeyThroughDynamoDbAndSqs"]
    assert sorted(as_list(kms["Action"])) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert kms["Resource"] == arn_of(syn, syn.gateway.key)
    assert len(kms["Condition"]["StringEquals"]["kms:ViaService"]) == 2
    actions = {a for s in _recovery_statements(syn) for a in as_list(s["Action"])}
    # No writes to the table, no deletes, no other logs or queue actions; '*' only for X-Ray.
    assert not {a for a in actions if a.startswith("dynamodb:") and a != "dynamodb:BatchGetItem"}
    for statement in _recovery_statements(syn):
        if "*" in as_list(statement["Resource"]):
            assert all(a.startswith("xray:") for a in as_list(statement["Action"]))
    assert not [s for s in statements(syn) if "logs:*" in as_list(s["Action"])]


def test_recovery_dead_letter_queue_is_encrypted_with_the_gateway_key(default_gateway: Synthesized) -> None:
    syn = default_gateway
    dlq = syn.template.to_json()["Resources"][
        syn.stack.get_logical_id(syn.gateway.usage_recovery.dead_letter_queue.node.default_child)
    ]["Properties"]
    assert dlq["KmsMasterKeyId"] == arn_of(syn, syn.gateway.key)
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600


def test_recovery_failure_metric_sums_errors_and_both_dead_letter_queues(
    default_gateway: Synthesized,
) -> None:
    syn = default_gateway
    metric = syn.gateway.metric_usage_recovery_failures()
    assert metric.expression == "FILL(errors, 0) + FILL(dlq, 0) + FILL(spilled, 0)"  # type: ignore[attr-defined]
    using = metric.using_metrics  # type: ignore[attr-defined]
    assert using["errors"].metric_name == "Errors"
    assert syn.resolve(using["errors"].dimensions["FunctionName"]) == ref(
        syn, syn.gateway.usage_recovery.function
    )
    assert syn.resolve(using["dlq"].dimensions["QueueName"]) == syn.resolve(
        syn.gateway.usage_recovery.dead_letter_queue.queue_name
    )
    assert syn.resolve(using["spilled"].dimensions["QueueName"]) == syn.resolve(
        syn.gateway.spill_dead_letter_queue.queue_name
    )
