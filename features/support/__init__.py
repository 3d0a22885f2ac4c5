"""Team support: summarizes tickets for the next agent."""

from ai_factory.constructs.ai_feature import AiFeature, AlertThresholds
from stacks.team_stack import TeamStack

TEAM = "support"


def build(team: TeamStack) -> None:
    """The support team's features."""
    AiFeature(
        team,
        "TicketSummarizer",
        feature="ticket-summarizer",
        owner="support-leads@example.com",
        clearance="internal",
        models=["chat-fast"],
        prompts=["prompts/summarize-ticket.yaml"],
        monthly_budget_usd=250,
        rate_limit_rpm=120,
        guardrail_policy="default",
        alert_thresholds=AlertThresholds(p99_latency_ms=8000, error_rate_pct=5, budget_pct=80),
    )
