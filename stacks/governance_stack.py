"""The data-governance stack: the Lake Formation data lake and the factory's governed datasets.

It deploys before the team stacks: their features' Lake Formation grants use its LF-tags, and
CloudFormation's execution role becomes a data-lake admin here first (``docs/data-governance.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aws_cdk as cdk
from constructs import Construct

from ai_factory.constructs.data_connector import DataConnector
from ai_factory.constructs.governance import DEFAULT_DOMAINS, DataLake, GovernedDataset
from stacks.base import FactoryStack


class GovernanceStack(FactoryStack):
    """Lake Formation settings and LF-tags, the raw/curated/quarantine zones, a database per domain, and
    the datasets product features may read (``datasets``, keyed ``<domain>.<name>``).

    :param domains: data domains (LF-tag ``domain`` values, one Glue database each).
    :param admin_arns: extra data-lake admins (appended, never replacing existing ones).
    :param lake_props: extra keyword props for ``DataLake``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        domains: Sequence[str] = DEFAULT_DOMAINS,
        admin_arns: Sequence[str] = (),
        lake_props: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.lake = DataLake(self, "Lake", domains=domains, admin_arns=admin_arns, **(lake_props or {}))
        self.datasets: dict[str, GovernedDataset] = {}
        self.connectors: dict[str, DataConnector] = {}
        if "support" in self.lake.domains:
            # Support tickets after the connector masked them: personal data redacted or tokenized.
            self.add_dataset(
                "SupportTickets",
                name="tickets",
                domain="support",
                classification="internal",
                pii=False,
                columns={
                    "ticket_id": "string",
                    "created_at": "timestamp",
                    "subject": "string",
                    "body": "string",
                    "product": "string",
                    "priority": "string",
                },
                partition_keys={"ingest_date": "string"},
                description="Support tickets, PII masked by the data connector",
            )
            # Raw tickets land in raw/support/tickets/; the connector validates, masks PII (keyed HMAC
            # hashes, so joins on masked values still work) and writes the curated dataset.
            self.connectors["support.tickets"] = DataConnector(
                self, "SupportTicketsConnector", dataset=self.datasets["support.tickets"], masking="hash"
            )
        if "knowledge" in self.lake.domains:
            self.add_dataset(
                "KnowledgeArticles",
                name="articles",
                domain="knowledge",
                classification="public",
                pii=False,
                columns={
                    "article_id": "string",
                    "title": "string",
                    "body": "string",
                    "updated_at": "timestamp",
                    "tags": "array<string>",
                },
                partition_keys={"ingest_date": "string"},
                description="Published help-centre articles",
            )
            # Articles land in raw/knowledge/articles/; each curated version starts the sync of the
            # knowledge bases over the dataset (RagFeature). Authors' names and contacts in the text are
            # redacted: the articles are public, their authors' personal data is not.
            self.connectors["knowledge.articles"] = DataConnector(
                self,
                "KnowledgeArticlesConnector",
                dataset=self.datasets["knowledge.articles"],
                masking="redact",
            )
        # Team stacks import the lake's names and ARNs; strong references keep them from disappearing.
        cdk.Annotations.of(self).acknowledge_warning(
            "@aws-cdk/core:crossStackReferencesDefaultStrong",
            "Team stacks import the governed datasets' database names; strong references protect them.",
        )

    def add_dataset(self, construct_id: str, **props: Any) -> GovernedDataset:
        """Declare a governed dataset in the lake (``GovernedDataset`` props, ``foundation`` implied)."""
        dataset = GovernedDataset(self, construct_id, foundation=self.lake, **props)
        self.datasets[dataset.qualified_name] = dataset
        return dataset
