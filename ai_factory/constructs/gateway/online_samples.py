"""The gateway's online-evaluation sample queue: exchanges Bedrock's invocation log never holds.

Online evaluation samples Bedrock traffic from Bedrock's model invocation log. Answers of external
providers and SageMaker endpoints are not in that log, so the gateway sends those sampled exchanges
itself, after the response (``aif_gateway.online_samples``), to this queue; the ``OnlineEvaluation``'s
sampler consumes it and writes each into the feature's sample table. Created only when an
``OnlineEvaluation`` asks for it (``LlmGateway.enable_online_samples``): a gateway whose features nobody
samples has no queue, no key and no permission to send.

The messages hold prompts and answers, so the queue has a key of its own (the gateway's key also
encrypts its tables and logs, which the sampler must not be able to decrypt), and only the gateway may
send and only the sampler receive. Messages the sampler cannot write are received at most
``MAX_RECEIVE_COUNT`` times, then kept in the dead-letter queue (14 days) for a person.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from ai_factory.platform.nag import acknowledge
from ai_factory.platform.secure_defaults import encrypted_queue, via_services
from aif_gateway import contract

__all__ = [
    "MAX_RECEIVE_COUNT",
    "SAMPLER_TIMEOUT",
    "GatewaySampleQueue",
    "acknowledge_consumer_mapping",
    "build_sample_queue",
]

SAMPLER_TIMEOUT = Duration.minutes(1)
"""The consuming sampler's timeout (``OnlineEvaluation``); the queue's visibility timeout is six times it,
as Lambda advises for an SQS event source."""
MAX_RECEIVE_COUNT = 5


@dataclass(frozen=True)
class GatewaySampleQueue:
    """The queue, its dead-letter queue and their key; ``consumer`` is the one construct that reads it."""

    queue: sqs.Queue
    dead_letter_queue: sqs.Queue
    key: kms.Key
    consumer: Construct


def build_sample_queue(
    scope: Construct, function: lambda_.Function, consumer: Construct
) -> GatewaySampleQueue:
    """The queue in ``scope`` (the gateway), which ``function`` (the gateway function) may send to and
    is told the URL of (``AIF_SAMPLE_QUEUE_URL``)."""
    parent = Construct(scope, "OnlineSamples")
    key = kms.Key(
        parent,
        "Key",
        description="AI Factory gateway: online-evaluation samples (prompts and answers) on their way to "
        "the features' sample tables",
        enable_key_rotation=True,
        # Nothing outlives the queues it encrypts: a sample kept longer than its queue is a copy nobody
        # asked for.
        removal_policy=RemovalPolicy.DESTROY,
        pending_window=Duration.days(7),
    )
    dead_letter_queue = encrypted_queue(parent, "DeadLetterQueue", key=key)
    queue = encrypted_queue(
        parent,
        "Queue",
        key=key,
        visibility_timeout=Duration.seconds(SAMPLER_TIMEOUT.to_seconds() * 6),
        dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=MAX_RECEIVE_COUNT, queue=dead_letter_queue),
    )
    function.add_to_role_policy(
        iam.PolicyStatement(sid="SendOnlineSamples", actions=["sqs:SendMessage"], resources=[queue.queue_arn])
    )
    # What an SQS producer needs of the queue's key (the data key it encrypts with), through SQS only.
    function.add_to_role_policy(
        iam.PolicyStatement(
            sid="EncryptOnlineSamples",
            actions=["kms:GenerateDataKey", "kms:Decrypt"],
            resources=[key.key_arn],
            conditions=via_services("sqs"),
        )
    )
    function.add_environment(contract.SAMPLE_QUEUE_URL_ENV, queue.queue_url)
    acknowledge(
        dead_letter_queue,
        {
            "Serverless-SQSRedrivePolicy": (
                "This queue is the sample queue's dead-letter queue, the end of the redrive chain: samples "
                "the sampler could not write after five receives wait here 14 days for a person."
            )
        },
    )
    return GatewaySampleQueue(queue, dead_letter_queue, key, consumer)


def acknowledge_consumer_mapping(mapping: lambda_.CfnEventSourceMapping) -> None:
    """The sampler's SQS mapping: its failure path is the queue's redrive policy."""
    acknowledge(
        mapping,
        {
            "Serverless-LambdaEventSourceMappingDestination": (
                "Lambda supports on-failure destinations only for stream and Kafka event sources; for SQS "
                "the queue's redrive policy is the failure path: after five receives a sample moves to the "
                "KMS-encrypted dead-letter queue (14 days)."
            )
        },
    )
