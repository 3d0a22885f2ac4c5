"""Team knowledge: answers employees' questions from internal documentation."""

from ai_factory.constructs.ai_feature import AiFeature, AlertThresholds
from ai_factory.constructs.governed_assistant import GovernedAssistant
from ai_factory.constructs.rag_feature import RagFeature
from stacks.team_stack import TeamStack

TEAM = "knowledge"


def build(team: TeamStack) -> None:
    """The knowledge team's features."""
    qa = AiFeature(
        team,
        "InternalQa",
        feature="internal-qa",
        owner="knowledge-platform@example.com",
        clearance="confidential",
        models=["chat-smart"],
        prompts=["prompts/answer-question.yaml"],
        monthly_budget_usd=1000,
        rate_limit_rpm=300,
        alert_thresholds=AlertThresholds(p99_latency_ms=20000, error_rate_pct=2, budget_pct=90),
    )
    if team.governance is not None:  # the app always passes it; some tests build the team alone
        # The help-centre articles as a knowledge base: each curated version is written as documents (title,
        # body, tags) with metadata sidecars and indexed; clients ask in one call (chat "retrieval":
        # {"knowledge_base": "internal-qa"}) or two (POST /v1/retrieve). Its retrieval suite is
        # evals/grounded-answers.yaml (documents/ is the same layout, for offline runs).
        docs = RagFeature(
            team,
            "InternalQaDocs",
            feature=qa,
            dataset=team.governance.datasets["knowledge.articles"],
            document_fields=["title", "body", "tags"],
            chunk_max_tokens=300,
            chunk_overlap_pct=20,
        )
        # The employees' assistant over those articles (docs/assistant.md): signed-in users get answers
        # only from what their group's clearance covers; every answer is metered to internal-qa.
        GovernedAssistant(
            team,
            "EmployeeAssistant",
            feature=qa,
            knowledge_bases=[docs],
            clearance_groups={"employees": "internal", "knowledge-editors": "confidential"},
        )
