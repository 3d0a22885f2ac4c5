"""Team knowledge: answers employees' questions from internal documentation."""

from ai_factory.constructs.ai_feature import AiFeature, AlertThresholds
from ai_factory.constructs.governed_assistant import GovernedAssistant
from ai_factory.constructs.rag_feature import RagFeature
from stacks.team_stack import TeamStack

TEAM = "knowledge"


def build(team: TeamStack) -> None:
    """The knowledge team's features: Q&A over the help-centre articles, and the employees' assistant."""
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
    if team.governance is None:  # the app always passes it; some tests build the team alone
        return
    # Articles indexed as documents with metadata sidecars; asked in one call (chat "retrieval") or two
    # (POST /v1/retrieve); its retrieval suite is evals/grounded-answers.yaml (docs/rag.md).
    docs = RagFeature(
        team,
        "InternalQaDocs",
        feature=qa,
        dataset=team.governance.datasets["knowledge.articles"],
        document_fields=["title", "body", "tags"],
        chunk_max_tokens=300,
        chunk_overlap_pct=20,
    )
    groups = {"employees": "internal", "knowledge-editors": "confidential"}  # docs/assistant.md
    GovernedAssistant(team, "EmployeeAssistant", feature=qa, knowledge_bases=[docs], clearance_groups=groups)
