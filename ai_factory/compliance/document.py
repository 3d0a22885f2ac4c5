"""The report as a format-neutral document (headings, paragraphs, tables, lists).

Both renderers (Markdown and HTML) draw the same blocks, so the two files can never say different
things. Cells and texts are plain strings; the renderers escape them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ai_factory.compliance.diff import ReportDiff
from ai_factory.compliance.evidence import ARTIFACTS_BY_ID, OBLIGATIONS
from ai_factory.compliance.model import NO_ACK, Report

NO_PUBLIC = "Public (anonymous) endpoints without a recorded reason: none."


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


Block = Heading | Paragraph | Table | Bullets


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append(Heading(level, text))

    def p(self, text: str) -> None:
        self.blocks.append(Paragraph(text))

    def table(self, headers: tuple[str, ...], rows: Sequence[tuple[str, ...]], empty: str) -> None:
        if rows:
            self.blocks.append(Table(headers, tuple(rows)))
        else:
            self.p(empty)

    def bullets(self, items: list[str]) -> None:
        if items:
            self.blocks.append(Bullets(tuple(items)))


def report_document(report: Report) -> Document:
    """Every section of the compliance report."""
    doc = Document("AI Factory security and compliance report")
    unacked = [s for s in report.wildcards if any(reason == NO_ACK for _, reason in s.acknowledgements)]
    doc.p(f"Source: {report.source} ({len(report.stacks)} stacks: {', '.join(report.stacks)}).")
    doc.bullets(
        [
            f"{len(report.teams)} teams, {len(report.features)} features",
            f"{len(report.public_endpoints)} public (anonymous) endpoints",
            f"{len(report.wildcards)} IAM statements with wildcards, "
            f"{len(unacked)} without an acknowledgement",
            f"{len(report.keys)} KMS keys, {len(report.guardrails)} guardrails, "
            f"{len(report.datasets)} Lake Formation grants",
        ]
    )
    for note in report.notes:
        doc.p(f"Note: {note}")

    doc.h(2, "Teams and features")
    doc.table(
        ("team", "stacks", "features"),
        [
            (
                team,
                ", ".join(stacks),
                ", ".join(f.feature for f in report.features if f.team == team) or "none",
            )
            for team, stacks in report.teams.items()
        ],
        "No teams found (no stack tagged Team and no AiFeature keys).",
    )
    doc.table(
        ("feature", "owner", "clearance", "budget (USD/month)", "rate limit (rpm)", "prompts", "caller role"),
        [
            (
                f.name,
                f.owner,
                f.clearance,
                f.monthly_budget_usd,
                f.rate_limit_rpm,
                ", ".join(f.prompts) or "none",
                f.caller_role or "none",
            )
            for f in report.features
        ],
        "No AiFeature found in this assembly.",
    )

    doc.h(2, "Models each feature may call")
    doc.p(
        "A feature's gateway key allows only these aliases; each alias is an ordered fallback chain of "
        "catalog models (the gateway tries them in this order)."
    )
    rows = []
    for f in report.features:
        for alias in f.aliases or ("(none)",):
            targets = f.models.get(alias, ())
            chain = " -> ".join(f"{t.name} ({t.model_id})" for t in targets) or "not in the gateway's routes"
            rows.append((f.name, alias, chain))
    doc.table(("feature", "alias", "models (fallback order)"), rows, "No feature may call any model.")

    doc.h(2, "External providers")
    doc.p(
        "Which features may send which data classification to models outside AWS, through which alias. "
        "A feature sends data up to its clearance; a model whose ceiling (the catalog's "
        "max_classification) is below that clearance receives nothing (the gateway skips it)."
    )
    doc.table(
        ("feature", "clearance", "alias", "model", "provider", "model's ceiling", "processed in", "sends"),
        [
            (
                x.feature,
                x.clearance,
                x.alias,
                x.target.name,
                x.target.provider,
                x.target.max_classification or "unknown",
                x.processed_in,
                x.sends,
            )
            for x in report.external_flows()
        ],
        "No feature may call a model outside AWS.",
    )

    doc.h(2, "Datasets each feature may read")
    doc.table(
        ("grantee", "principal", "resource", "permissions", "classification"),
        [
            (g.grantee, g.principal, g.resource, ", ".join(g.permissions), g.classification or "not tagged")
            for g in report.datasets
        ],
        "No Lake Formation grants (AWS::LakeFormation::PrincipalPermissions) in this assembly: no feature "
        "is granted a governed dataset.",
    )

    doc.h(2, "Guardrail and PII policies")
    if not report.guardrails:
        doc.p("No Bedrock guardrail in this assembly: model calls are not filtered.")
    for g in report.guardrails:
        doc.h(3, g.label)
        doc.p(
            f"Applied by: {', '.join(g.used_by) or 'no function found'}. "
            f"Versions: {', '.join(g.versions) or 'none (the working draft)'}."
        )
        doc.table(
            ("content filter", "input strength", "output strength"),
            list(g.content_filters),
            "No content filters.",
        )
        doc.table(("PII entity", "action"), list(g.pii), "No PII entities configured.")
        if g.regexes:
            doc.table(("regex", "action"), list(g.regexes), "")
        doc.bullets(
            [f"Denied topics: {', '.join(g.denied_topics)}" for _ in [0] if g.denied_topics]
            + [f"Word filters: {', '.join(g.word_filters)}" for _ in [0] if g.word_filters]
            + [
                f"Contextual grounding: {', '.join(f'{t} {v}' for t, v in g.grounding)}"
                for _ in [0]
                if g.grounding
            ]
        )

    doc.h(2, "KMS keys and what they protect")
    doc.table(
        ("key", "rotation", "protects", "identity policies that may use it"),
        [
            (
                k.label + (f" ({k.description})" if k.description else ""),
                "on" if k.rotation else "OFF",
                ", ".join(k.protects) or "nothing found in this assembly",
                ", ".join(k.usable_by) or "none",
            )
            for k in report.keys
        ],
        "No customer-managed KMS keys in this assembly.",
    )

    doc.h(2, "Log and audit retention")
    doc.table(
        ("kind", "resource", "retention", "on stack deletion"),
        [(r.kind, r.label, r.retention, r.deletion) for r in report.retention],
        "No log groups, buckets, tables or queues in this assembly.",
    )

    doc.h(2, "Public endpoints")
    unreviewed = report.unreviewed_public_endpoints
    if unreviewed:
        doc.p(
            f"Public (anonymous) endpoints without a recorded reason: {len(unreviewed)}. Each needs a "
            "reviewer's decision."
        )
    else:
        doc.p(NO_PUBLIC)
    if report.public_endpoints and len(unreviewed) < len(report.public_endpoints):
        doc.p(
            "Public by design (the construct that made it recorded why; the reason is in the last column): "
            f"{len(report.public_endpoints) - len(unreviewed)}."
        )
    doc.table(
        ("kind", "resource", "exposure", "authentication", "detail", "public by design because"),
        [(e.kind, e.label, e.exposure, e.auth, e.detail, e.public_by_design) for e in report.endpoints],
        "No endpoints reachable from outside the account's networks.",
    )

    doc.h(2, "IAM wildcards and their acknowledgements")
    doc.p(
        "Identity-policy statements that allow a wildcard action or resource, with the reason recorded "
        "when the cdk-nag finding was acknowledged (KMS key policies, whose Resource '*' means the key "
        "itself, are not listed)."
    )
    doc.table(
        ("policy", "attached to", "actions", "resources", "wildcard", "acknowledgement"),
        [
            (
                s.policy,
                ", ".join(s.attached_to),
                ", ".join(s.actions),
                ", ".join(s.resources),
                ", ".join(s.wildcards),
                " / ".join(
                    reason if reason == NO_ACK else f"{rule}: {reason}" for rule, reason in s.acknowledgements
                ),
            )
            for s in report.wildcards
        ],
        "No IAM wildcards.",
    )

    doc.h(2, "Evidence map")
    doc.p(
        "Which factory artifact supports which obligation. The artifacts are evidence a reviewer can "
        "inspect; they support the obligations, they do not satisfy them on their own (EU AI Act "
        "Articles 9-15 and 17 apply to high-risk AI systems; classifying a feature is a legal decision)."
    )
    framework = ""
    rows = []
    for ob in OBLIGATIONS:
        if ob.framework != framework:
            if rows:
                doc.table(("obligation", "supported by", "how"), rows, "")
                rows = []
            framework = ob.framework
            doc.h(3, framework)
        rows.append(
            (f"{ob.ref} {ob.title}", ", ".join(_artifact_label(a, report) for a in ob.artifacts), ob.how)
        )
    doc.table(("obligation", "supported by", "how"), rows, "")
    doc.h(3, "Artifacts")
    doc.table(
        ("artifact", "where", "what it shows", "in this assembly"),
        [
            (a.name, a.where, a.what, _presence(a.id, report))
            for a in (ARTIFACTS_BY_ID[i] for i in ARTIFACTS_BY_ID)
        ],
        "",
    )
    return doc


def _artifact_label(artifact_id: str, report: Report) -> str:
    name = ARTIFACTS_BY_ID[artifact_id].name
    return f"{name} (not deployed here)" if report.evidence_present.get(artifact_id) is False else name


def _presence(artifact_id: str, report: Report) -> str:
    if artifact_id not in report.evidence_present:
        return "repository / registry artifact"
    return "yes" if report.evidence_present[artifact_id] else "not found"


def diff_document(diff: ReportDiff) -> Document:
    """What changed in access and data flows, section by section."""
    doc = Document("AI Factory access and data-flow changes")
    doc.p(f"Before: {diff.before}. After: {diff.after}.")
    if diff.empty:
        doc.p(
            "No changes in features, model allow-lists, dataset grants, IAM statements, endpoints, "
            "retention, KMS keys or guardrails."
        )
        return doc
    for section in diff.sections:
        if section.empty:
            continue
        doc.h(2, section.name)
        rows = [("added", k, "", v) for k, v in section.added]
        rows += [("removed", k, v, "") for k, v in section.removed]
        rows += [("changed", k, before, after) for k, before, after in section.changed]
        doc.table(("change", "what", "before", "after"), rows, "")
    unchanged = [s.name for s in diff.sections if s.empty]
    if unchanged:
        doc.p(f"Unchanged: {', '.join(unchanged)}.")
    return doc
