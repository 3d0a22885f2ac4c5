"""Team support: summarizes tickets for the next agent."""

from ai_factory.constructs.ai_feature import AiFeature, AlertThresholds
from ai_factory.constructs.online_sampling import OnlineSampling
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
        # Online evaluation (docs/evaluation.md): 2 % of requests (about 2,000 of 100,000 a day at the
        # 120 rpm limit's ceiling; the drift job needs 30 a day), kept 14 days, so the baseline is the
        # last two weeks. Internal clearance allows copies; no judge (no extra model cost).
        online_sampling=OnlineSampling(rate=0.02, retention_days=14),
    )
