"""``ai-factory lineage FEATURE``: where a feature's data and prompts come from.

Prints the chain data source -> dataset version -> prompt/model version -> feature, from:

* the synthesized cloud assembly (``--assembly``, default ``cdk.out``): the feature's prompts (metadata
  ``ai-factory:prompts``: name, catalog route, content hash) and datasets (metadata
  ``ai-factory:datasets``, or ``--dataset DOMAIN.NAME``);
* the lineage store (``--store``: a folder or ``s3://bucket/prefix``, default ``$AIF_LINEAGE_URI`` or
  ``$AI_FACTORY_HOME/lineage``): the data connectors' OpenLineage RunEvents, one per raw file, whose
  ``version`` facet is the content digest of the curated data they wrote;
* the prompt registry (MLflow, ``--tracking-uri``): which version the ``--alias`` (default
  ``production``) serves and which version the feature's code holds; the model catalog maps the
  prompt's route to the Bedrock model IDs.

Every source is optional: what cannot be read is shown as such, so the command answers offline too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ai_factory.cli.errors import CommandError, UsageError
from aif_gateway import contract

LINEAGE_URI_ENV = "AIF_LINEAGE_URI"
PROMPTS_METADATA = contract.PROMPTS_METADATA_TYPE
DATASETS_METADATA = contract.DATASETS_METADATA_TYPE


def add_parser(subparsers: Any) -> None:
    """Register ``lineage`` on the top-level parser."""
    lineage = subparsers.add_parser(
        "lineage", help="data source -> dataset version -> prompt/model version -> feature"
    )
    lineage.add_argument(
        "feature", metavar="FEATURE", help="TEAM/FEATURE, or FEATURE when the name is unique"
    )
    lineage.add_argument(
        "--assembly", default="cdk.out", help="synthesized cloud assembly (default: cdk.out)"
    )
    lineage.add_argument(
        "--store", help=f"lineage store: folder or s3://bucket/prefix (default: ${LINEAGE_URI_ENV})"
    )
    lineage.add_argument(
        "--dataset",
        action="append",
        default=[],
        metavar="DOMAIN.NAME",
        help="a dataset the feature reads (repeatable; adds to the assembly's)",
    )
    lineage.add_argument("--tracking-uri", help="MLflow tracking URI of the prompt registry")
    lineage.add_argument("--no-registry", action="store_true", help="do not query the prompt registry")
    lineage.add_argument(
        "--alias", default="production", help="prompt alias that serves (default: production)"
    )
    lineage.add_argument("--catalog", help="model catalog YAML (default: the built-in catalog)")
    lineage.add_argument("--versions", type=int, default=3, help="dataset versions to show (default: 3)")
    lineage.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    lineage.set_defaults(run=cmd_lineage)


# --------------------------------------------------------------------------------------- assembly


def assembly_metadata(folder: Path) -> list[tuple[str, str, Any]]:
    """``(construct path, type, data)`` for every metadata entry of a cloud assembly (nested ones too)."""
    entries: list[tuple[str, str, Any]] = []
    manifests = sorted(folder.rglob("manifest.json"))
    for manifest_path in manifests:
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for artifact in (manifest.get("artifacts") or {}).values():
            sources = [artifact.get("metadata") or {}]
            extra = artifact.get("additionalMetadataFile")
            if extra:
                path = manifest_path.parent / extra
                with contextlib.suppress(OSError, ValueError):
                    sources.append(json.loads(path.read_text(encoding="utf-8")))
            for source in sources:
                for construct_path, items in source.items():
                    for item in items or []:
                        entries.append((construct_path, str(item.get("type")), item.get("data")))
    return entries


@dataclass
class FeatureRef:
    team: str
    feature: str
    prompts: list[dict[str, Any]] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)


def find_feature(entries: Iterable[tuple[str, str, Any]], wanted: str) -> FeatureRef | None:
    """The feature named ``TEAM/FEATURE`` (or a unique ``FEATURE``) in the assembly metadata."""
    team, _, name = wanted.rpartition("/")
    found: dict[tuple[str, str], FeatureRef] = {}
    for _, kind, data in entries:
        if kind not in (PROMPTS_METADATA, DATASETS_METADATA) or not isinstance(data, list):
            continue
        for item in data:
            if not isinstance(item, Mapping) or item.get("feature") != name:
                continue
            if team and item.get("team") != team:
                continue
            key = (str(item.get("team")), name)
            ref = found.setdefault(key, FeatureRef(*key))
            if kind == PROMPTS_METADATA and item not in ref.prompts:
                ref.prompts.append(dict(item))
            elif kind == DATASETS_METADATA and item.get("dataset") not in ref.datasets:
                ref.datasets.append(str(item.get("dataset")))
    if len(found) > 1:
        teams = ", ".join(sorted(f"{t}/{f}" for t, f in found))
        raise UsageError(f"FEATURE: {wanted!r} is ambiguous ({teams}); use TEAM/FEATURE")
    return next(iter(found.values()), None)


# ---------------------------------------------------------------------------------------- store


def read_events(store: str) -> list[dict[str, Any]]:
    """Every RunEvent in the store (a folder or ``s3://bucket/prefix``); unreadable objects skipped."""
    events: list[dict[str, Any]] = []
    if store.startswith("s3://"):
        import boto3

        bucket, _, prefix = store.removeprefix("s3://").partition("/")
        s3 = boto3.client("s3")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                if obj["Key"].endswith(".json"):
                    body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                    events.extend(_event(body))
        return events
    root = Path(store).expanduser()
    if not root.is_dir():
        return []
    for path in sorted(root.rglob("*.json")):
        try:
            events.extend(_event(path.read_bytes()))
        except OSError:
            continue
    return events


def _event(body: bytes) -> list[dict[str, Any]]:
    try:
        event = json.loads(body)
    except ValueError:
        return []
    if isinstance(event, dict) and isinstance(event.get("run"), dict) and isinstance(event.get("job"), dict):
        return [event]
    return []


def dataset_versions(events: Sequence[Mapping[str, Any]], dataset: str, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` runs that fed ``dataset`` (``DOMAIN.NAME``), newest first, summarised."""
    job = f"connector.{dataset}"
    runs = [e for e in events if e["job"].get("name") == job]
    runs.sort(key=lambda e: str(e.get("eventTime", "")), reverse=True)
    out = []
    for event in runs[:limit]:
        table = (event.get("outputs") or [{}])[0]
        facets = table.get("facets") or {}
        run_facet = (event["run"].get("facets") or {}).get("aiFactory_connectorRun") or {}
        source = (event.get("inputs") or [{}])[0]
        digest = (source.get("facets") or {}).get("aiFactory_contentDigest") or {}
        masking = facets.get("aiFactory_maskingPolicy") or {}
        out.append(
            {
                "status": event.get("eventType"),
                "time": event.get("eventTime"),
                "run_id": event["run"].get("runId"),
                "version": (facets.get("version") or {}).get("datasetVersion"),
                "table": f"{table.get('namespace')}/{table.get('name')}",
                "records_curated": run_facet.get("recordsCurated"),
                "records_quarantined": run_facet.get("recordsQuarantined"),
                "file_quarantined": run_facet.get("fileQuarantineReason"),
                "masking": masking.get("mode"),
                "findings": masking.get("findingsByKind") or {},
                "source": f"{source.get('namespace')}/{source.get('name')}",
                "source_sha256": digest.get("digest"),
                "error": ((event["run"].get("facets") or {}).get("errorMessage") or {}).get("message"),
            }
        )
    return out


# ---------------------------------------------------------------------------------- registries


def prompt_versions(prompts: Sequence[Mapping[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each prompt with the registry's serving version and the version matching the feature's code."""
    registry = None
    problem = None
    if not args.no_registry:
        try:
            from ai_factory.prompts.registry import PromptRegistry

            registry = PromptRegistry(args.tracking_uri)
        except Exception as exc:  # no mlflow installed, unreachable server
            problem = f"registry unavailable: {type(exc).__name__}: {exc}"
    routes = _routes(args.catalog)
    out = []
    for prompt in prompts:
        entry: dict[str, Any] = {
            "name": prompt.get("name"),
            "model": prompt.get("model"),
            "models": routes.get(str(prompt.get("model")), []),
            "content_hash": prompt.get("contentHash"),
            "source": prompt.get("source"),
            "serving": None,
            "code_version": None,
            "note": problem,
            "registry": registry is not None,
        }
        if registry is not None:
            try:
                versions = registry.versions(str(prompt.get("name")))
                for info in versions:
                    if info.content_hash == prompt.get("contentHash"):
                        entry["code_version"] = info.version
                    if args.alias in info.aliases:
                        entry["serving"] = {
                            "version": info.version,
                            "content_hash": info.content_hash,
                            "model": info.model,
                            "models": routes.get(info.model, []),
                        }
                if entry["serving"] is None:
                    entry["note"] = f"no {args.alias!r} alias"
            except Exception as exc:
                entry["note"] = f"{type(exc).__name__}: {exc}"
        out.append(entry)
    return out


def _routes(catalog_path: str | None) -> dict[str, list[str]]:
    try:
        from ai_factory.catalog.model_catalog import ModelCatalog

        catalog = ModelCatalog.load(catalog_path)
    except Exception:
        return {}
    return {
        alias: [catalog.models[t].invoke_id for t in route.targets if t in catalog.models]
        for alias, route in catalog.routes.items()
    }


# ------------------------------------------------------------------------------------- command


def default_store() -> str:
    home = os.environ.get("AI_FACTORY_HOME") or str(Path.home() / ".ai-factory")
    return os.environ.get(LINEAGE_URI_ENV) or str(Path(home) / "lineage")


def cmd_lineage(args: argparse.Namespace, out: TextIO) -> int:
    if args.versions < 1:
        raise UsageError("--versions must be at least 1")
    for dataset in args.dataset:
        if dataset.count(".") != 1:
            raise UsageError(f"--dataset: {dataset!r} is not DOMAIN.NAME")
    assembly = Path(args.assembly)
    entries = assembly_metadata(assembly) if assembly.is_dir() else []
    ref = find_feature(entries, args.feature)
    if ref is None:
        if not args.dataset:
            where = (
                f"the assembly {assembly}" if assembly.is_dir() else f"{assembly} (not found: run make synth)"
            )
            raise CommandError(f"feature {args.feature!r} has no prompts or datasets in {where}")
        team, _, name = args.feature.rpartition("/")
        ref = FeatureRef(team or "?", name)
    for dataset in args.dataset:
        if dataset not in ref.datasets:
            ref.datasets.append(dataset)
    store = args.store or default_store()
    events = read_events(store)
    report = {
        "feature": f"{ref.team}/{ref.feature}",
        "store": store,
        "datasets": [
            {"dataset": d, "versions": dataset_versions(events, d, args.versions)} for d in ref.datasets
        ],
        "prompts": prompt_versions(ref.prompts, args),
    }
    if args.format == "json":
        out.write(json.dumps(report, indent=2, default=str) + "\n")
    else:
        out.write(render_text(report))
    return 0


def _short(digest: str | None, keep: int = 12) -> str:
    if not digest:
        return "-"
    algorithm, _, value = digest.rpartition(":")
    return f"{algorithm + ':' if algorithm else ''}{value[:keep]}"


def render_text(report: Mapping[str, Any]) -> str:
    """The chain as an indented tree: feature <- prompts/models, feature <- datasets <- sources."""
    lines = [f"feature {report['feature']}"]
    lines.append("  prompt / model versions")
    if not report["prompts"]:
        lines.append("    (no prompts)")
    for p in report["prompts"]:
        code = f"v{p['code_version']}" if p["code_version"] else "unregistered"
        if not p["registry"]:
            code = "registry not queried"
        lines.append(
            f"    {p['name']}  code {_short(p['content_hash'])} ({code})  route {p['model']}"
            f" -> {', '.join(p['models']) or '?'}"
        )
        serving = p["serving"]
        if serving:
            drift = "" if serving["content_hash"] == p["content_hash"] else "  (differs from the code)"
            models = ", ".join(serving["models"]) or "?"
            lines.append(
                f"      serving v{serving['version']} {_short(serving['content_hash'])}"
                f"  route {serving['model']} -> {models}{drift}"
            )
        if p["note"]:
            lines.append(f"      ({p['note']})")
    lines.append(f"  datasets (lineage store {report['store']})")
    if not report["datasets"]:
        lines.append("    (no datasets)")
    for d in report["datasets"]:
        lines.append(f"    {d['dataset']}")
        if not d["versions"]:
            lines.append("      (no connector runs recorded)")
        for v in d["versions"]:
            counts = f"{v['records_curated'] or 0} curated, {v['records_quarantined'] or 0} quarantined"
            if v["file_quarantined"]:
                counts = f"file quarantined: {v['file_quarantined']}"
            lines.append(f"      version {_short(v['version'], 16)}  {v['status']}  {v['time']}  {counts}")
            findings = ", ".join(f"{k} {n}" for k, n in sorted(v["findings"].items())) or "no PII found"
            lines.append(f"        masking {v['masking'] or '-'} ({findings})  run {v['run_id']}")
            if v["error"]:
                lines.append(f"        error: {v['error']}")
            lines.append(f"        <- source {v['source']}  sha256:{_short(v['source_sha256'], 16)}")
    return "\n".join(lines) + "\n"
