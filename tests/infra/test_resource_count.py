"""``stacks.resource_count``: what a stack will hold at synth, counted while it is built, including the
managed policies a role splits off a default policy that outgrew an inline policy (CDK does that at
synth): the estimate is never below what CDK creates, and not wildly above it."""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms

from stacks.resource_count import cfn_resources, overflow_policies, synth_resources

ENV = cdk.Environment(account="111122223333", region="us-east-1")


def granted(tables: int) -> tuple[cdk.App, cdk.Stack, iam.Role]:
    """A role granted read/write on ``tables`` tables, each with its own key (as sample tables are)."""
    app = cdk.App()
    stack = cdk.Stack(app, "Granted", env=ENV)
    role = iam.Role(stack, "Reader", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    for i in range(tables):
        key = kms.Key(stack, f"Key{i}")
        table = dynamodb.Table(
            stack,
            f"Table{i}",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=key,
            stream=dynamodb.StreamViewType.NEW_IMAGE,
        )
        table.grant_read_write_data(role)
        table.grant_stream_read(role)
    return app, stack, role


def split_off(app: cdk.App, stack: cdk.Stack) -> tuple[int, int]:
    """(overflow policies, all resources) in the synthesized template."""
    resources = app.synth().get_stack_by_name(stack.stack_name).template["Resources"]
    overflow = [r for r in resources.values() if r["Type"] == "AWS::IAM::ManagedPolicy"]
    return len(overflow), len(resources)


@pytest.mark.parametrize("tables", [5, 40, 120])
def test_the_estimate_covers_the_policies_cdk_splits_off(tables: int) -> None:
    app, stack, role = granted(tables)
    estimated = overflow_policies(role)
    counted = cfn_resources(stack) + synth_resources(stack)
    actual, total = split_off(app, stack)
    assert actual <= estimated <= 4 * actual + 1, (actual, estimated)
    # Everything else is counted exactly (+1: the metadata resource a plain test app leaves out).
    assert total <= counted <= total + 1 + (estimated - actual)
    if tables == 5:
        assert estimated == actual == 0


def test_a_stack_without_roles_adds_only_the_metadata_resource() -> None:
    stack = cdk.Stack(cdk.App(), "Plain", env=ENV)
    kms.Key(stack, "Key")
    assert (cfn_resources(stack), synth_resources(stack)) == (1, 1)
