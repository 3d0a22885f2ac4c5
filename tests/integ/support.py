"""Shared pieces of the CDK integration tests in this folder (``integ_*.py``, run by ``integ-runner``).

Each ``integ_*.py`` is a CDK app: it builds the factory's real stacks, adds an ``IntegTest`` with
assertions (AWS API calls made by a deploy-time Lambda in the assertion stack), and synthesizes.
``integ-runner`` compares the synthesized templates with the committed ``*.snapshot/`` folders offline
(``make test``); with AWS credentials, ``make integ`` deploys each case, runs its assertions and
destroys it. Stacks are environment-agnostic so the snapshots do not depend on the machine's account.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # integ-runner runs `python tests/integ/integ_x.py`: stacks/ must import
    sys.path.insert(0, str(REPO))

import json  # noqa: E402

import aws_cdk as cdk  # noqa: E402
from aws_cdk import aws_iam as iam  # noqa: E402
from aws_cdk import aws_lambda as lambda_  # noqa: E402
from aws_cdk.integ_tests_alpha import IApiCall, IntegTest, InvocationType  # noqa: E402
from constructs import Construct  # noqa: E402

from ai_factory import AiFeature  # noqa: E402
from stacks.gateway_stack import GatewayStack  # noqa: E402

TEAM = "integ"
FEATURE = "smoke"
# The offline echo route: the answer is deterministic and needs no Bedrock model access.
MODEL = "echo"
PROMPT = "integ ping"

# A client Lambda in the test stack: reads the feature's key from its secret and sends one chat
# request through the deployed API, as a product team's code would. Standard library only.
_CLIENT_CODE = """
import json, os, urllib.request, boto3

def handler(event, context):
    secret = boto3.client("secretsmanager").get_secret_value(SecretId=os.environ["SECRET_ARN"])
    key = json.loads(secret["SecretString"])["api_key"]
    messages = [{"role": "user", "content": event["prompt"]}]
    body = json.dumps({"model": os.environ["MODEL"], "messages": messages})
    request = urllib.request.Request(
        os.environ["GATEWAY_URL"].rstrip("/") + "/chat/completions",
        data=body.encode(),
        headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return {"status": response.status, "body": json.loads(response.read())}
    except urllib.error.HTTPError as error:
        return {"status": error.code, "body": error.read().decode()[:2000]}
"""


INTEG_PREFIX = "aif-integ"
"""The cases' name prefix: deployed into an account that runs a factory, they share none of its names."""


def new_app() -> cdk.App:
    """The test app (no cdk-nag packs: the real app's synth checks the same stacks with them)."""
    return cdk.App(context={"ai-factory:prefix": INTEG_PREFIX})


def gateway_stack(app: cdk.App, stack_id: str) -> GatewayStack:
    return GatewayStack(
        app,
        stack_id,
        description="AI Factory integration test: gateway",
        # The account-level API Gateway logging role is an account-wide setting: leave it to the real app.
        gateway_props={"configure_account_logging_role": False},
    )


class SmokeFeature(Construct):
    """A feature with its own API key on the gateway, and a client Lambda that calls the API with it."""

    def __init__(self, scope: Construct, construct_id: str, *, gateway: GatewayStack) -> None:
        super().__init__(scope, construct_id)
        self.feature = AiFeature(
            self,
            "Feature",
            team=TEAM,
            feature=FEATURE,
            owner="platform-ai@example.com",
            clearance="internal",
            models=[MODEL],
            monthly_budget_usd=5,
            rate_limit_rpm=60,
            gateway=gateway.gateway,
        )
        self.client = lambda_.Function(
            self,
            "Client",
            runtime=lambda_.Runtime.PYTHON_3_13,
            handler="index.handler",
            code=lambda_.Code.from_inline(_CLIENT_CODE),
            timeout=cdk.Duration.seconds(60),
            environment={
                "SECRET_ARN": self.feature.secret.secret_arn,
                "GATEWAY_URL": gateway.gateway.url,
                "MODEL": MODEL,
            },
        )
        self.feature.grant_read_api_key(self.client)  # the secret and its KMS key

    def send(self, integ: IntegTest) -> IApiCall:
        """An assertion step that sends one chat request (``PROMPT``) through the API with the key."""
        return integ.assertions.invoke_function(
            function_name=self.client.function_name,
            invocation_type=InvocationType.REQUEST_RESPONSE,
            payload=json.dumps({"prompt": PROMPT}),
        )


def gateway_with_client(
    app: cdk.App, gateway_id: str, client_id: str
) -> tuple[GatewayStack, cdk.Stack, SmokeFeature]:
    """A gateway stack and a client stack with a ``SmokeFeature`` on that gateway."""
    gateway = gateway_stack(app, gateway_id)
    client = cdk.Stack(app, client_id, description="AI Factory integration test: client")
    return gateway, client, SmokeFeature(client, "Smoke", gateway=gateway)


def allow(call: object, actions: list[str], resources: list[str] | None = None) -> None:
    """Give an assertion's provider Lambda a permission CDK cannot derive from the API name."""
    provider = call.provider  # type: ignore[attr-defined]
    provider.add_to_role_policy(
        iam.PolicyStatement(actions=actions, resources=resources or ["*"]).to_statement_json()
    )
