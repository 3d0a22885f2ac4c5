"""``LlmGateway.from_lookup`` through the real CDK CLI: a team's app that samples a feature online,
synthesized with ``cdk synth`` against SSM in moto's server (no AWS, no network).

The infrastructure tests (``tests/infra/test_gateway_lookup.py``) hand the app the context the CLI would
cache; this runs the CLI itself, so the protocol they assume is checked: the first synth with nothing
cached completes, the CLI looks the parameters up, caches ``not-published`` for an edge namespace the
platform has not published (so the second synth gets "no namespace" and the sampler's refusal, not a
missing-context error), and after the platform publishes it and the entry is reset, the namespace reaches
the sampler's subscription filter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from aif_gateway import contract
from tests.infra.test_gateway_lookup import NAMESPACE, PUBLISHED

REPO = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"  # moto's account: the lookup role the CLI assumes is in it
REGION = "us-east-1"
EDGE_KEY = (
    f"ssm:account={ACCOUNT}:parameterName={contract.GATEWAY_PARAMETER_PREFIX}/"
    f"{contract.GatewayParameters.EDGE_NAMESPACE}:region={REGION}"
)

TEAM_APP = f"""\
import aws_cdk as cdk
from aws_cdk import aws_logs as logs

from ai_factory import AiFeature, LlmGateway
from ai_factory.constructs.online_evaluation import OnlineEvaluation, OnlineSampling

app = cdk.App()
stack = cdk.Stack(app, "ClaimsFeatures", env=cdk.Environment(account="{ACCOUNT}", region="{REGION}"))
gateway = LlmGateway.from_lookup(stack, "Gateway")
feature = AiFeature(
    stack, "Triage", team="claims", gateway=gateway, feature="triage", owner="a@example.com",
    clearance="internal", models=["chat-fast"], monthly_budget_usd=10, rate_limit_rpm=10,
    online_sampling=OnlineSampling(rate=0.1),
)
log_group = logs.LogGroup.from_log_group_arn(
    stack, "InvocationLogs", "arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/bedrock/invocation-logs"
)
OnlineEvaluation(stack, "Online", features=[feature], invocation_log_group=log_group)
app.synth()
"""

pytestmark = [pytest.mark.e2e, pytest.mark.synth]


@pytest.fixture
def ssm_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def test_the_cli_caches_an_unpublished_namespace_and_picks_it_up_once_published(
    ssm_endpoint: str, tmp_path: Path
) -> None:
    (tmp_path / "app.py").write_text(TEAM_APP, encoding="utf-8")
    cdk_json = {"app": f"{sys.executable} app.py", "context": {"cli-telemetry": False}}
    (tmp_path / "cdk.json").write_text(json.dumps(cdk_json), encoding="utf-8")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTEST", "CDK_"))},
        "AWS_ENDPOINT_URL": ssm_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "CDK_VALIDATION": "false",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "1",
        "PATH": os.pathsep.join(
            [
                str(REPO / "node_modules" / ".bin"),
                str(Path(sys.executable).parent),
                os.environ.get("PATH", ""),
            ]
        ),
        # The app imports this checkout, as the test process does.
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
    }
    ssm = boto3.client(
        "ssm", endpoint_url=ssm_endpoint, region_name=REGION, aws_access_key_id="t", aws_secret_access_key="t"
    )
    for name, value in PUBLISHED.items():
        ssm.put_parameter(Name=f"{contract.GATEWAY_PARAMETER_PREFIX}/{name}", Value=value, Type="String")

    def cdk(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["cdk", *args, "--no-notices"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )

    def cached() -> dict[str, str]:
        return json.loads((tmp_path / "cdk.context.json").read_text(encoding="utf-8"))

    # A platform that has not published the parameter: the lookup does not fail, the sampler refuses.
    before = cdk("synth", "-q")
    assert before.returncode != 0
    assert "its gateway ClaimsFeatures/Gateway has no edge_namespace" in before.stderr, before.stderr[-3000:]
    assert "redeploy the platform's gateway stack" in before.stderr
    assert cached()[EDGE_KEY] == "not-published"
    assert "SSM parameter not available" not in before.stderr

    # The platform publishes it; the team resets the cached entry and synthesizes again.
    ssm.put_parameter(
        Name=f"{contract.GATEWAY_PARAMETER_PREFIX}/{contract.GatewayParameters.EDGE_NAMESPACE}",
        Value=NAMESPACE,
        Type="String",
    )
    assert cdk("context", "--reset", EDGE_KEY).returncode == 0
    after = cdk("synth", "-q")
    assert after.returncode == 0, after.stderr[-3000:]
    assert cached()[EDGE_KEY] == NAMESPACE
    template = json.loads((tmp_path / "cdk.out" / "ClaimsFeatures.template.json").read_text(encoding="utf-8"))
    (subscription,) = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Logs::SubscriptionFilter"
    ]
    assert subscription["FilterPattern"] == '{ $.requestMetadata.aif_gateway = "' + NAMESPACE + '" }'
