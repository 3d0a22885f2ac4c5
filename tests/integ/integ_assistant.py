"""Integration test: the governed assistant's page is served over HTTPS and its API refuses anonymous
callers.

Deploys the gateway, the governance stack and a team stack with the assistant's feature, a knowledge
base over the support tickets dataset and a ``GovernedAssistant``; then fetches the page through
CloudFront (200: the page publisher wrote it, origin access control lets CloudFront read it) and calls
``/api/me`` without an ID token (401 from the Cognito authorizer, before the backend runs).
"""

from __future__ import annotations

from aws_cdk.integ_tests_alpha import ExpectedResult, IntegTest
from support import MODEL, gateway_stack, new_app

from ai_factory.constructs.ai_feature import AiFeature
from ai_factory.constructs.governed_assistant import GovernedAssistant
from ai_factory.constructs.rag_feature import RagFeature
from stacks.governance_stack import GovernanceStack
from stacks.team_stack import TeamStack

app = new_app()
gateway = gateway_stack(app, "AifIntegAssistantGateway")
governance = GovernanceStack(app, "AifIntegAssistantGovernance", description="AI Factory integration test")
team = TeamStack(app, "AifIntegAssistantTeam", team="integ", gateway_stack=gateway, governance=governance)
feature = AiFeature(
    team,
    "Assistant",
    feature="assistant",
    owner="integ@example.com",
    clearance="internal",
    models=[MODEL],
    monthly_budget_usd=1,
    rate_limit_rpm=10,
)
tickets = RagFeature(team, "Tickets", feature=feature, dataset=governance.datasets["support.tickets"])
assistant = GovernedAssistant(
    team,
    "CompanyAssistant",
    feature=feature,
    knowledge_bases=[tickets],
    clearance_groups={"employees": "internal"},
)

integ = IntegTest(app, "AssistantTest", test_cases=[gateway, governance, team], stack_update_workflow=False)
page = integ.assertions.http_api_call(assistant.url)
page.expect(ExpectedResult.object_like({"status": 200}))
anonymous = integ.assertions.http_api_call(f"{assistant.url}api/me")
anonymous.expect(ExpectedResult.object_like({"status": 401}))
page.next(anonymous)
app.synth()
