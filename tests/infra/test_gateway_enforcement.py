"""``GatewayEnforcement``: the SCP and boundary deny direct model invocation to all but the exempt
principals, and CloudTrail events of such calls reach an alarm on the on-call topic.

The stacks mirror the factory: the gateway in one stack, the on-call topic in another, the guardrail in a
third. The detection patterns are also run through moto's EventBridge (an implementation of the pattern
language that is not ours) against CloudTrail events in the shape Bedrock records them.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
import yaml
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Match, Template
from moto.events.models import EventPattern

from ai_factory.catalog.model_catalog import ModelCatalog
from ai_factory.constructs.gateway.llm_gateway import LlmGateway
from ai_factory.constructs.gateway_enforcement import (
    BEDROCK_INVOKE_ACTIONS,
    DETECTED_EVENT_NAMES,
    GatewayEnforcement,
    GatewayEnforcementError,
)
from ai_factory.constructs.observability.facade import Observability
from ai_factory.constructs.observability.settings import RUNBOOKS
from tests.infra.conftest import ENV, RealApp
from tests.unit.test_catalog_sagemaker import CUSTOM as SAGEMAKER_MODEL

REPO = Path(__file__).resolve().parents[2]
ACCOUNT = ENV.account
RUNBOOK_BASE = "https://example.com/runbooks"


def _catalog() -> ModelCatalog:
    """The packaged catalog plus one custom model on a SageMaker endpoint."""
    data = yaml.safe_load((REPO / "ai_factory" / "data" / "models.yaml").read_text(encoding="utf-8"))
    data["models"].append(copy.deepcopy(SAGEMAKER_MODEL))  # a routed custom model
    data["routes"].append({"alias": "classify", "targets": ["ticket-classifier"]})
    return ModelCatalog.from_dict(data, source="models.yaml")


@dataclass
class Built:
    enforcement: GatewayEnforcement
    template: Template
    gateway_role_arn: Any  # the gateway role's ARN as the enforcement template references it
    kb_role_arn: Any
    topic_arn: Any


@pytest.fixture(scope="module")
def built() -> Built:
    app = cdk.App()
    gateway_stack = cdk.Stack(app, "Gateway", env=ENV)
    gateway = LlmGateway(gateway_stack, "Gateway", catalog=_catalog())
    team_stack = cdk.Stack(app, "Team", env=ENV)
    kb_role = iam.Role(team_stack, "KbRole", assumed_by=iam.ServicePrincipal("bedrock.amazonaws.com"))
    obs_stack = cdk.Stack(app, "Observability", env=ENV)
    observability = Observability(
        obs_stack, "Observability", gateway=gateway, runbook_base_url=RUNBOOK_BASE, oncall_emails=["a@b.c"]
    )
    stack = cdk.Stack(app, "Enforcement", env=ENV)
    enforcement = GatewayEnforcement(
        stack,
        "Enforcement",
        gateway=gateway,
        model_access_roles=[kb_role],
        break_glass_role_names=["BreakGlassAdmin", "emergency/BreakGlassReadOnly"],
        observability=observability,
    )
    return Built(
        enforcement,
        Template.from_stack(stack),
        stack.resolve(gateway.runtime_role.role_arn),
        stack.resolve(kb_role.role_arn),
        stack.resolve(observability.topic.topic_arn),
    )


# ------------------------------------------------------------------------- rendering CloudFormation


def _render(value: Any) -> Any:
    """A resolved CloudFormation value with its intrinsics evaluated as a deploy would (pseudo
    parameters of ``ENV``; each imported or referenced value as a role ARN named after it)."""
    if isinstance(value, list):
        return [_render(v) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        pseudo = {"AWS::Partition": "aws", "AWS::AccountId": ACCOUNT, "AWS::Region": ENV.region}
        return pseudo.get(value["Ref"], value["Ref"])
    if set(value) == {"Fn::Join"}:
        separator, parts = value["Fn::Join"]
        return separator.join(str(_render(p)) for p in parts)
    if set(value) == {"Fn::GetAtt"}:
        return f"arn:aws:iam::{ACCOUNT}:role/{value['Fn::GetAtt'][0]}"
    if set(value) == {"Fn::ImportValue"}:
        name = str(_render(value["Fn::ImportValue"])).replace(":", "-")
        return f"arn:aws:iam::{ACCOUNT}:role/{name[-60:]}"
    return {k: _render(v) for k, v in value.items()}


def _scp(template: Template) -> dict[str, Any]:
    """The SCP as the management account receives it: the ``ModelAccessScp`` output's value."""
    outputs = template.find_outputs("*")
    (value,) = [o["Value"] for key, o in outputs.items() if "ModelAccessScp" in key]
    return json.loads(_render(value))


# ------------------------------------------------------------------------------- prevention: SCP


def test_scp_output_is_a_deny_only_policy_for_bedrock_and_the_factory_endpoints(built: Built) -> None:
    scp = _scp(built.template)
    assert scp["Version"] == "2012-10-17"
    statements = {s["Sid"]: s for s in scp["Statement"]}
    assert set(statements) == {"DenyDirectModelInvocation", "DenyDirectFactoryEndpointInvocation"}
    assert all(s["Effect"] == "Deny" for s in scp["Statement"])  # an SCP grants nothing: no Allow
    bedrock = statements["DenyDirectModelInvocation"]
    assert sorted(bedrock["Action"]) == sorted(BEDROCK_INVOKE_ACTIONS)
    assert {"bedrock:InvokeModel*", "bedrock:StartAsyncInvoke", "bedrock-mantle:CreateInference"} <= set(
        bedrock["Action"]
    )
    assert bedrock["Resource"] == "*"
    sagemaker = statements["DenyDirectFactoryEndpointInvocation"]
    assert sagemaker["Action"] == "sagemaker:InvokeEndpoint*"
    # Only the endpoints the catalog routes to: other teams' ML endpoints are not the factory's business.
    assert sagemaker["Resource"] == f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/aif-ticket-classifier"
    assert len(json.dumps(scp, separators=(",", ":"))) < 5120  # AWS Organizations' SCP size limit


def test_scp_exempts_exactly_the_gateway_the_factory_roles_and_break_glass(built: Built) -> None:
    exempt = {
        "arn:aws:iam::*:role/BreakGlassAdmin",
        "arn:aws:iam::*:role/emergency/BreakGlassReadOnly",
        _render(built.gateway_role_arn),
        _render(built.kb_role_arn),
    }
    for statement in _scp(built.template)["Statement"]:
        assert set(statement["Condition"]) == {"ArnNotLike"}
        assert set(statement["Condition"]["ArnNotLike"]["aws:PrincipalArn"]) == exempt
    # The gateway's role is referenced from its own stack, not re-typed: a renamed role stays exempt.
    assert "Fn::ImportValue" in json.dumps(built.gateway_role_arn)


# -------------------------------------------------------------------------- prevention: boundary


def test_boundary_caps_with_one_allow_and_the_same_denies(built: Built) -> None:
    (policy,) = built.template.find_resources("AWS::IAM::ManagedPolicy").values()
    props = policy["Properties"]
    assert not {"Roles", "Users", "Groups"} & set(props)  # attached by account owners, not by this stack
    statements = _render(props["PolicyDocument"]["Statement"])
    allows = [s for s in statements if s["Effect"] == "Allow"]
    assert allows == [{"Sid": "PermissionsCeiling", "Effect": "Allow", "Action": "*", "Resource": "*"}]
    denies = [s for s in statements if s["Effect"] == "Deny"]
    assert denies == _scp(built.template)["Statement"]
    built.template.has_output("*", {"Value": {"Ref": Match.string_like_regexp("EnforcementBoundary")}})


# ---------------------------------------------------------------------------------- detection


def _rules(built: Built) -> dict[str, dict[str, Any]]:
    return {key: r["Properties"] for key, r in built.template.find_resources("AWS::Events::Rule").items()}


def _rule(built: Built, name: str) -> tuple[str, dict[str, Any]]:
    (found,) = [(k, p) for k, p in _rules(built).items() if name in k]
    return found


def test_direct_invocation_rule_matches_cloudtrail_model_calls_by_anyone_not_exempt(built: Built) -> None:
    _, rule = _rule(built, "DirectModelInvocation")
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.bedrock"]
    assert pattern["detail-type"] == ["AWS API Call via CloudTrail"]
    assert pattern["detail"]["eventSource"] == ["bedrock.amazonaws.com"]
    assert {"InvokeModel", "InvokeModelWithResponseStream", "Converse", "ConverseStream"} <= set(
        pattern["detail"]["eventName"]
    )
    roles, others = pattern["detail"]["userIdentity"]["$or"]
    (anything_but,) = roles["sessionContext"]["sessionIssuer"]["arn"]
    excluded = _render(anything_but["anything-but"])
    assert set(excluded) == {
        _render(built.gateway_role_arn),
        _render(built.kb_role_arn),
        f"arn:aws:iam::{ACCOUNT}:role/BreakGlassAdmin",
        f"arn:aws:iam::{ACCOUNT}:role/emergency/BreakGlassReadOnly",
    }
    assert others == {"type": [{"anything-but": ["AssumedRole", "AWSService"]}]}


def test_rules_keep_the_events_in_an_encrypted_log_group_eventbridge_may_write(built: Built) -> None:
    t = built.template
    (group_id,) = t.find_resources("AWS::Logs::LogGroup").keys()
    t.has_resource_properties(
        "AWS::Logs::LogGroup",
        {
            "KmsKeyId": {"Fn::GetAtt": [Match.string_like_regexp("EvidenceKey"), "Arn"]},
            "RetentionInDays": 365,
        },
    )
    rule_ids = list(_rules(built))
    assert len(rule_ids) == 2
    for rule in _rules(built).values():
        (target,) = rule["Targets"]
        assert _render(target["Arn"]) == f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:{group_id}"
    (policy,) = t.find_resources("AWS::Logs::ResourcePolicy").values()
    (statement,) = json.loads(_render(policy["Properties"]["PolicyDocument"]))["Statement"]
    assert statement["Principal"]["Service"] == ["events.amazonaws.com", "delivery.logs.amazonaws.com"]
    assert sorted(statement["Condition"]["ArnEquals"]["aws:SourceArn"]) == sorted(
        f"arn:aws:iam::{ACCOUNT}:role/{rule_id}" for rule_id in rule_ids
    )


def test_each_rule_has_an_alarm_on_the_oncall_topic_linking_the_runbook(built: Built) -> None:
    alarms = {k: a["Properties"] for k, a in built.template.find_resources("AWS::CloudWatch::Alarm").items()}
    assert len(alarms) == 2
    by_name = {a["AlarmName"]: a for a in alarms.values()}
    assert set(by_name) == {
        "ai-factory-Critical-Platform-DirectModelAccess",
        "ai-factory-Warning-Platform-BreakGlassModelAccess",
    }
    for name, rule_name in (
        ("ai-factory-Critical-Platform-DirectModelAccess", "DirectModelInvocation"),
        ("ai-factory-Warning-Platform-BreakGlassModelAccess", "BreakGlassModelInvocation"),
    ):
        alarm = by_name[name]
        rule_id, _ = _rule(built, rule_name)
        assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == (
            "AWS/Events",
            "MatchedEvents",
            "Sum",
        )
        assert alarm["Dimensions"] == [{"Name": "RuleName", "Value": {"Ref": rule_id}}]
        assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
        assert alarm["AlarmActions"] == alarm["OKActions"] == [built.topic_arn]
        assert alarm["TreatMissingData"] == "notBreaching"
        link = alarm["AlarmDescription"].rsplit("Runbook: ", 1)[1]
        assert link == f"{RUNBOOK_BASE}/direct-model-access.md"
        assert "direct-model-access" in RUNBOOKS
        assert (REPO / "docs" / "runbooks" / "direct-model-access.md").is_file()


# --------------------------------------------------------- detection, through moto's EventBridge


def _cloudtrail_event(event_name: str, identity: dict[str, Any], error: str | None = None) -> dict[str, Any]:
    """The ``detail`` of an "AWS API Call via CloudTrail" event for a Bedrock runtime call, in the shape
    of the Bedrock user guide's example record."""
    detail = {
        "eventVersion": "1.08",
        "userIdentity": identity,
        "eventTime": "2026-12-03T11:58:59Z",
        "eventSource": "bedrock.amazonaws.com",
        "eventName": event_name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "192.0.2.0",
        "userAgent": "Boto3/1.40.0",
        "requestParameters": {"modelId": "anthropic.claude-sonnet-4-5-20250929-v1:0"},
        "responseElements": None,
        "readOnly": False,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management",
    }
    if error:
        detail["errorCode"] = error
    return detail


def _role(arn: str) -> dict[str, Any]:
    name = arn.rsplit("/", 1)[1]
    return {
        "type": "AssumedRole",
        "principalId": "AROAEXAMPLE:session",
        "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/session",
        "accountId": ACCOUNT,
        "sessionContext": {
            "sessionIssuer": {"type": "Role", "principalId": "AROAEXAMPLE", "arn": arn, "accountId": ACCOUNT}
        },
    }


def _matches(pattern: dict[str, Any], details: list[dict[str, Any]]) -> list[bool]:
    """Which events with these ``details`` moto's EventBridge pattern matcher lets through ``pattern``."""
    matcher = EventPattern.load(json.dumps(pattern))
    return [
        matcher.matches_event(
            {"source": "aws.bedrock", "detail-type": "AWS API Call via CloudTrail", "detail": detail}
        )
        for detail in details
    ]


def test_patterns_separate_bypass_break_glass_and_the_factory_s_own_calls(built: Built) -> None:
    gateway, kb = _render(built.gateway_role_arn), _render(built.kb_role_arn)
    break_glass = f"arn:aws:iam::{ACCOUNT}:role/BreakGlassAdmin"
    cases = [
        # (detail, direct-invocation alarm?, break-glass alarm?)
        (_cloudtrail_event("Converse", _role(gateway)), False, False),
        (_cloudtrail_event("InvokeModel", _role(kb)), False, False),
        (_cloudtrail_event("ConverseStream", _role(f"arn:aws:iam::{ACCOUNT}:role/team-app")), True, False),
        (
            _cloudtrail_event("InvokeModel", _role(f"arn:aws:iam::{ACCOUNT}:role/team-app"), "AccessDenied"),
            True,
            False,
        ),
        (
            _cloudtrail_event(
                "InvokeModelWithResponseStream",
                {"type": "IAMUser", "arn": f"arn:aws:iam::{ACCOUNT}:user/dev", "accountId": ACCOUNT},
            ),
            True,
            False,
        ),
        (_cloudtrail_event("Converse", {"type": "Root", "arn": f"arn:aws:iam::{ACCOUNT}:root"}), True, False),
        (_cloudtrail_event("Converse", _role(break_glass)), False, True),
        # Not a model invocation, or not a caller at all: no alarm.
        (
            _cloudtrail_event("ListFoundationModels", _role(f"arn:aws:iam::{ACCOUNT}:role/team-app")),
            False,
            False,
        ),
        (
            _cloudtrail_event("InvokeModel", {"type": "AWSService", "invokedBy": "bedrock.amazonaws.com"}),
            False,
            False,
        ),
    ]
    details = [c[0] for c in cases]
    _, direct = _rule(built, "DirectModelInvocation")
    _, glass = _rule(built, "BreakGlassModelInvocation")
    assert _matches(_render(direct["EventPattern"]), details) == [c[1] for c in cases]
    assert _matches(_render(glass["EventPattern"]), details) == [c[2] for c in cases]
    assert set(DETECTED_EVENT_NAMES) >= {"InvokeModel", "Converse", "ConverseStream"}


# ------------------------------------------------------------------------- options and validation


def _new(**props: Any) -> GatewayEnforcement:
    app = cdk.App()
    gateway = LlmGateway(cdk.Stack(app, "Gateway", env=ENV), "Gateway", catalog=ModelCatalog.load())
    return GatewayEnforcement(cdk.Stack(app, "Enforcement", env=ENV), "Guard", gateway=gateway, **props)


@pytest.mark.parametrize(
    ("props", "field"),
    [
        ({"break_glass_role_names": ["has space"]}, "break_glass_role_names"),
        ({"break_glass_role_names": ["x" * 65]}, "break_glass_role_names"),
        ({"exempt_principal_arns": ["arn:aws:iam::111122223333:user/dev"]}, "exempt_principal_arns"),
        ({"exempt_principal_arns": ["BreakGlass"]}, "exempt_principal_arns"),
        ({"evidence_retention": cdk.aws_logs.RetentionDays.INFINITE}, "evidence_retention"),
        ({"evidence_retention": 42}, "evidence_retention"),
        (
            {
                "exempt_principal_arns": [
                    f"arn:aws:iam::{n:012d}:role/kb-embedding-role-of-team" for n in range(100)
                ]
            },
            "exempt_principal_arns",
        ),
    ],
)
def test_invalid_props_name_the_construct_and_the_field(props: dict[str, Any], field: str) -> None:
    with pytest.raises(GatewayEnforcementError, match=f"GatewayEnforcement Guard: {field}: "):
        _new(**props)


def test_without_sagemaker_models_or_observability_there_is_less_to_deny_and_no_alarm() -> None:
    enforcement = _new(exempt_principal_arns=["arn:aws:iam::444455556666:role/team-kb-*"])
    template = Template.from_stack(cdk.Stack.of(enforcement))
    scp = _scp(template)
    assert [s["Sid"] for s in scp["Statement"]] == ["DenyDirectModelInvocation"]
    exempt = scp["Statement"][0]["Condition"]["ArnNotLike"]["aws:PrincipalArn"]
    assert "arn:aws:iam::444455556666:role/team-kb-*" in exempt
    template.resource_count_is("AWS::Events::Rule", 1)  # no break-glass roles: no break-glass rule
    template.resource_count_is("AWS::CloudWatch::Alarm", 0)


def test_detection_can_be_left_out() -> None:
    template = Template.from_stack(cdk.Stack.of(_new(detection=False)))
    for kind in ("AWS::Events::Rule", "AWS::Logs::LogGroup", "AWS::Logs::ResourcePolicy"):
        template.resource_count_is(kind, 0)
    template.resource_count_is("AWS::IAM::ManagedPolicy", 1)


# ------------------------------------------------------------------------------------ the real app


@pytest.mark.synth
def test_the_factory_exempts_its_knowledge_base_roles(real_app: RealApp) -> None:
    template = json.loads((real_app.outdir / "AiFactoryEnforcement.template.json").read_text())
    outputs = template["Outputs"]
    (scp,) = [o["Value"] for key, o in outputs.items() if "ModelAccessScp" in key]
    imports = [json.dumps(part) for part in scp["Fn::Join"][1] if isinstance(part, dict)]
    assert any("AiFactoryGateway" in i and "Role" in i for i in imports), imports
    assert any("AiFactoryTeamKnowledge" in i and "InternalQaDocs" in i for i in imports), imports


def test_build_factory_adds_the_enforcement_stack_unless_the_context_turns_it_off() -> None:
    from stacks.enforcement_stack import ENFORCEMENT_STACK_ID
    from stacks.factory import build_factory

    on = build_factory(cdk.App(), team_modules=[], env=ENV)
    assert on.enforcement is not None and on.enforcement.stack_name == ENFORCEMENT_STACK_ID
    assert on.enforcement.enforcement.gateway is on.gateway.gateway
    off_app = cdk.App(context={"ai-factory:gatewayEnforcement": "false"})
    assert build_factory(off_app, team_modules=[], env=ENV).enforcement is None
    assert off_app.node.try_find_child(ENFORCEMENT_STACK_ID) is None
