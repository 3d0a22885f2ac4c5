"""``ai-factory models``: list and show the approved-model catalog, write its cards, publish it to MLflow.

    ai-factory models list [--format table|json]
    ai-factory models show NAME [--format text|json]
    ai-factory models routes [--format table|json]
    ai-factory models cards [--out docs/models] [--check]
    ai-factory models publish [--tracking-uri URI] [--dry-run]

Every subcommand takes ``--catalog PATH`` (default: the packaged catalog).
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Sequence
from typing import Any, TextIO

from ai_factory.catalog.model_catalog import (
    PRICE_KEYS,
    CatalogError,
    CatalogModel,
    CatalogWarning,
    ModelCatalog,
)
from ai_factory.cli.errors import CommandError, UsageError

_PRICE_HEADERS = {"input": "IN", "output": "OUT", "cache_read": "CACHE-R", "cache_write": "CACHE-W"}


def add_parser(subparsers: Any) -> None:
    """Register ``models`` and its subcommands on the top-level parser."""
    models = subparsers.add_parser(
        "models", help="list the model catalog, write model cards, publish to MLflow"
    )
    sub = models.add_subparsers(dest="models_command", metavar="COMMAND", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--catalog", help="model catalog YAML (default: the built-in catalog)")

    ls = sub.add_parser(
        "list", parents=[common], help="every model: status, prices (USD per 1M tokens), routes"
    )
    ls.add_argument(
        "--format", choices=("table", "json"), default="table", help="output format (default: table)"
    )
    ls.set_defaults(run=cmd_list)

    show = sub.add_parser("show", parents=[common], help="one model's full catalog entry")
    show.add_argument("name", metavar="NAME", help="catalog model name, e.g. claude-haiku-4-5")
    show.add_argument(
        "--format", choices=("text", "json"), default="text", help="output format (default: text)"
    )
    show.set_defaults(run=cmd_show)

    routes = sub.add_parser(
        "routes", parents=[common], help="every route (model alias) and its fallback chain"
    )
    routes.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    routes.set_defaults(run=cmd_routes)

    cards = sub.add_parser("cards", parents=[common], help="write one Markdown card per model and an index")
    cards.add_argument("--out", default="docs/models", help="output folder (default: docs/models)")
    cards.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if the folder is not what would be written",
    )
    cards.set_defaults(run=cmd_cards)

    publish = sub.add_parser(
        "publish", parents=[common], help="publish the catalog to the MLflow model registry (idempotent)"
    )
    publish.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///$AI_FACTORY_HOME/mlflow.db)",
    )
    publish.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    publish.set_defaults(run=cmd_publish)


def load_catalog(path: str | None) -> ModelCatalog:
    """The catalog, with load errors as usage errors naming ``--catalog`` and warnings kept quiet."""
    try:
        with warnings.catch_warnings():
            # A deprecated model in a route is a synth-time warning; here `list` shows the date instead.
            warnings.simplefilter("ignore", CatalogWarning)
            return ModelCatalog.load(path)
    except CatalogError as exc:
        raise UsageError(f"--catalog: invalid model catalog: {exc}") from exc


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> list[str]:
    """Aligned columns, two spaces apart; columns whose index is in ``right`` are right-aligned."""
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    return [line(headers), *(line(r) for r in rows)]


def _status(model: CatalogModel) -> str:
    from ai_factory.catalog.model_cards import short_status

    return short_status(model)


def _routes_of(catalog: ModelCatalog, name: str) -> str:
    return ", ".join(f"{r.alias}#{pos}" for r, pos in catalog.routes_using(name)) or "-"


def _model_json(catalog: ModelCatalog, model: CatalogModel) -> dict[str, Any]:
    data = model.to_dict()
    data["routes"] = [{"alias": r.alias, "position": pos} for r, pos in catalog.routes_using(model.name)]
    return data


def cmd_list(args: argparse.Namespace, out: TextIO) -> int:
    from ai_factory.catalog.model_cards import usd

    catalog = load_catalog(args.catalog)
    if args.format == "json":
        json.dump([_model_json(catalog, m) for m in catalog.models.values()], out, indent=2)
        out.write("\n")
        return 0
    headers = [
        "NAME",
        "STATUS",
        "PROVIDER",
        "MODALITY",
        "CONTEXT",
        *(_PRICE_HEADERS[k] for k in PRICE_KEYS),
        "ROUTES",
    ]
    rows = [
        [
            m.name,
            _status(m),
            m.provider_name or m.provider,
            m.modality,
            f"{m.context_window:,}" if m.context_window else "-",
            *(usd(getattr(m.prices, k)) for k in PRICE_KEYS),
            _routes_of(catalog, m.name),
        ]
        for m in catalog.models.values()
    ]
    for line in table(headers, rows, right=(4, 5, 6, 7, 8)):
        print(line, file=out)
    print("Prices: USD per 1M tokens. ROUTES: alias#position in its fallback chain.", file=out)
    return 0


def cmd_show(args: argparse.Namespace, out: TextIO) -> int:
    from ai_factory.catalog.model_cards import tokens, usd

    catalog = load_catalog(args.catalog)
    model = catalog.models.get(args.name)
    if model is None:
        raise CommandError(f"no model {args.name!r} in the catalog; known: {', '.join(catalog.models)}")
    if args.format == "json":
        json.dump(_model_json(catalog, model), out, indent=2)
        out.write("\n")
        return 0
    notes = model.compliance_notes
    fields: list[tuple[str, str]] = [
        ("name", model.name),
        ("status", model.status),
        ("approved", f"by {model.approved_by} on {model.approved_on}" if model.approved_by else "-"),
        ("deprecated on", str(model.deprecated_on or "-")),
        ("provider", f"{model.provider_name or 'unknown'} ({model.provider})"),
        ("modality", model.modality),
        ("owner", model.owner or "unknown"),
        ("model id", model.model_id),
        ("default id", model.invoke_id),
        *(
            (f"id in {region}*" if region.endswith("-") else f"id in {region}", v)
            for region, v in sorted(model.regional_ids.items())
        ),
        ("regions", ", ".join(model.regions) or "-"),
        ("context window", tokens(model.context_window)),
        ("max output", tokens(model.max_output_tokens)),
        *((f"price {k}", f"{usd(getattr(model.prices, k))} USD / 1M tokens") for k in PRICE_KEYS),
        ("routes", _routes_of(catalog, model.name)),
        ("evaluated on", ", ".join(model.evaluated_on) or "none recorded"),
        ("data residency", notes.data_residency if notes else "unknown"),
        ("provider terms", (notes.provider_terms if notes else None) or "unknown"),
        ("compliance notes", (notes.notes if notes else None) or "-"),
        ("limitations", "; ".join(model.known_limitations) or "none recorded"),
    ]
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        print(f"{key.ljust(width)}  {' '.join(value.split())}", file=out)
    return 0


def cmd_routes(args: argparse.Namespace, out: TextIO) -> int:
    catalog = load_catalog(args.catalog)
    if args.format == "json":
        data = [
            {
                "alias": r.alias,
                "modality": r.modality,
                "targets": [{"name": t, "status": catalog.models[t].status} for t in r.targets],
            }
            for r in catalog.routes.values()
        ]
        json.dump(data, out, indent=2)
        out.write("\n")
        return 0
    rows = []
    for r in catalog.routes.values():
        chain = " -> ".join(
            t if catalog.models[t].status == "approved" else f"{t} ({_status(catalog.models[t])})"
            for t in r.targets
        )
        rows.append([r.alias, r.modality, chain])
    for line in table(["ALIAS", "MODALITY", "FALLBACK CHAIN"], rows):
        print(line, file=out)
    return 0


def cmd_cards(args: argparse.Namespace, out: TextIO) -> int:
    from ai_factory.catalog.model_cards import CardError, stale_cards, write_cards

    catalog = load_catalog(args.catalog)
    try:
        if args.check:
            problems = stale_cards(catalog, args.out)
            if problems:
                raise CommandError(
                    "model cards are out of date; run `ai-factory models cards"
                    + (f" --out {args.out}" if args.out != "docs/models" else "")
                    + "`:\n  "
                    + "\n  ".join(problems)
                )
            print(f"{args.out}: model cards are current", file=out)
            return 0
        result = write_cards(catalog, args.out)
    except CardError as exc:
        raise CommandError(str(exc)) from exc
    for name in result.written:
        print(f"wrote {args.out}/{name}", file=out)
    for name in result.removed:
        print(f"removed {args.out}/{name}", file=out)
    print(
        f"{len(result.written)} written, {len(result.unchanged)} unchanged, {len(result.removed)} removed",
        file=out,
    )
    return 0


def cmd_publish(args: argparse.Namespace, out: TextIO) -> int:
    from ai_factory.catalog.model_registry_mlflow import publish_catalog
    from ai_factory.state import default_tracking_uri

    catalog = load_catalog(args.catalog)
    uri = args.tracking_uri or default_tracking_uri()
    try:
        actions = publish_catalog(catalog, uri, dry_run=args.dry_run)
    except ImportError as exc:
        raise CommandError(f"MLflow is not installed: pip install 'ai-factory[mlflow]' ({exc})") from exc
    prefix = "would " if args.dry_run else ""
    for action in actions:
        print(f"{prefix}{action}", file=out)
    if not actions:
        print(f"{uri}: the registry already matches the catalog ({len(catalog.models)} models)", file=out)
    else:
        print(f"{uri}: {len(actions)} change(s){' (dry run)' if args.dry_run else ''}", file=out)
    return 0
