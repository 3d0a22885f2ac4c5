"""Integration test: an alarm that goes to ALARM notifies the on-call topic.

Deploys the gateway stack, the observability stack (platform dashboard, alarms, on-call topic) and a
test stack whose SQS queue subscribes to the topic; then sets one of the platform alarms to ALARM and
waits for the notification on the queue. This proves CloudWatch may publish to the (encrypted) topic.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk.integ_tests_alpha import ExpectedResult, IntegTest, Match
from support import allow, gateway_stack, new_app

from stacks.observability_stack import ObservabilityStack

app = new_app()
gateway = gateway_stack(app, "AifIntegAlarmsGateway")
observability = ObservabilityStack(
    app,
    "AifIntegAlarms",
    gateway_stack=gateway,
    # One setting per account and region, with no CloudFormation resource: not the test's to change.
    invocation_logging=False,
)
subscriber = cdk.Stack(
    app, "AifIntegAlarmsSubscriber", description="AI Factory integration test: on-call inbox"
)
inbox = sqs.Queue(subscriber, "Inbox", enforce_ssl=True, encryption=sqs.QueueEncryption.SQS_MANAGED)
observability.topic.add_subscription(subscriptions.SqsSubscription(inbox, raw_message_delivery=True))

alarm = next(c for c in observability.node.find_all() if isinstance(c, cloudwatch.Alarm))

integ = IntegTest(
    app, "AlarmsTest", test_cases=[gateway, observability, subscriber], stack_update_workflow=False
)
trip = integ.assertions.aws_api_call(
    "CloudWatch",
    "setAlarmState",
    {"AlarmName": alarm.alarm_name, "StateValue": "ALARM", "StateReason": "integration test: on-call path"},
)
allow(trip, ["cloudwatch:SetAlarmState"], [alarm.alarm_arn])

received = integ.assertions.aws_api_call(
    "SQS", "receiveMessage", {"QueueUrl": inbox.queue_url, "WaitTimeSeconds": 20, "MaxNumberOfMessages": 10}
)
allow(received, ["sqs:ReceiveMessage"], [inbox.queue_arn])
received.expect(
    ExpectedResult.object_like(
        {
            "Messages": Match.array_with(
                [Match.object_like({"Body": Match.string_like_regexp('"NewStateValue": ?"ALARM"')})]
            )
        }
    )
)
received.wait_for_assertions(total_timeout=cdk.Duration.minutes(5), interval=cdk.Duration.seconds(30))
trip.next(received)
app.synth()
