"""``ai-factory keys``: create, list, revoke and rotate a feature's API keys.

Keys are generated here, shown once, and stored only as hashes, either in the local SQLite store that
``ai-factory serve`` uses or in the deployed gateway's DynamoDB keys table (``--store aws``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TextIO

from ai_factory.cli.errors import CommandError, UsageError
from aif_gateway.config import CLASSIFICATIONS, GatewayConfig
from aif_gateway.contract import KEYS_TABLE_ENV
from aif_gateway.records import (
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_TOKENS_PER_MINUTE,
    ApiKeyRecord,
    KeyStore,
    UnknownKeyError,
    generate_key,
    utc_now,
)

# Team and feature names become metric dimensions, table keys and stack names: keep them plain.
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
DEFAULT_BUDGET_USD = 100.0
DEFAULT_RATE_LIMIT_RPM = 60
DEFAULT_GRACE_HOURS = 24.0


# --- argument parsing ---------------------------------------------------------------------------


def add_parser(subparsers: Any) -> None:
    """Register ``keys`` and its subcommands on the top-level parser."""
    keys = subparsers.add_parser("keys", help="create, list, revoke and rotate API keys")
    sub = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)

    store = argparse.ArgumentParser(add_help=False)
    group = store.add_argument_group("key store")
    group.add_argument(
        "--store",
        choices=("local", "aws"),
        default="local",
        help="local: the SQLite store ai-factory serve uses (default); aws: the deployed keys table",
    )
    group.add_argument("--state-dir", help="local state folder (default: $AI_FACTORY_HOME or ~/.ai-factory)")
    group.add_argument("--table", help=f"DynamoDB keys table for --store aws (default: ${KEYS_TABLE_ENV})")
    group.add_argument("--region", help="AWS region of the keys table (default: the AWS SDK's)")

    limits = argparse.ArgumentParser(add_help=False)
    limits.add_argument(
        "--expires-in-days", type=float, help="the key stops working after this many days (default: never)"
    )
    limits.add_argument(
        "--format", choices=("text", "json"), default="text", help="output format (default: text)"
    )

    create = sub.add_parser("create", parents=[store, limits], help="create a key for a team's feature")
    create.add_argument("--team", required=True, help="owning team, e.g. payments")
    create.add_argument("--feature", required=True, help="the feature the key is for, e.g. invoice-summary")
    create.add_argument("--models", required=True, help="comma-separated model aliases the key may use")
    create.add_argument(
        "--budget",
        type=float,
        default=DEFAULT_BUDGET_USD,
        help=f"monthly budget in USD for the feature (default: {DEFAULT_BUDGET_USD:g})",
    )
    create.add_argument(
        "--rate-limit",
        type=int,
        default=DEFAULT_RATE_LIMIT_RPM,
        help=f"requests per minute for the feature (default: {DEFAULT_RATE_LIMIT_RPM})",
    )
    _add_quota_flags(create, defaults=True)
    create.add_argument("--description", default="", help="free text shown by keys list")
    create.add_argument(
        "--clearance",
        choices=CLASSIFICATIONS,
        help="the feature's data clearance: models whose max_classification is below it are not called "
        "(default: not recorded, enforced as restricted)",
    )
    create.add_argument("--catalog", help="model catalog YAML to check --models against (default: built-in)")
    create.set_defaults(run=cmd_create)

    ls = sub.add_parser("list", parents=[store], help="list keys (never shows secrets or hashes)")
    ls.add_argument("--team", help="only this team's keys")
    ls.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    ls.set_defaults(run=cmd_list)

    revoke = sub.add_parser("revoke", parents=[store], help="revoke a key now")
    revoke.add_argument("key_id", metavar="KEY_ID", help="the key ID shown by keys create/list")
    revoke.set_defaults(run=cmd_revoke)

    rotate = sub.add_parser(
        "rotate",
        parents=[store, limits],
        help="create a replacement key with the same settings; the old one expires after a grace period",
    )
    rotate.add_argument("key_id", metavar="KEY_ID", help="the key ID to replace")
    rotate.add_argument(
        "--grace-hours",
        type=float,
        default=DEFAULT_GRACE_HOURS,
        help=f"hours the old key keeps working (default: {DEFAULT_GRACE_HOURS:g}; 0 = stop it now)",
    )
    rotate.set_defaults(run=cmd_rotate)

    update = sub.add_parser(
        "update",
        parents=[store],
        help="change a key's budget and limits (the key itself stays the same)",
    )
    update.add_argument("key_id", metavar="KEY_ID", help="the key ID shown by keys create/list")
    update.add_argument("--budget", type=float, help="monthly budget in USD for the feature")
    update.add_argument("--rate-limit", type=int, help="requests per minute for the feature")
    _add_quota_flags(update, defaults=False)
    update.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    update.set_defaults(run=cmd_update)


def _add_quota_flags(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """--tokens-per-minute and --max-concurrency (docs/gateway.md, "Limits")."""
    parser.add_argument(
        "--tokens-per-minute",
        type=int,
        default=DEFAULT_TOKENS_PER_MINUTE if defaults else None,
        help=f"input + output tokens per minute for the feature (default: {DEFAULT_TOKENS_PER_MINUTE})",
    )
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=DEFAULT_MAX_CONCURRENCY if defaults else None,
        help=f"requests of the feature in flight at once (default: {DEFAULT_MAX_CONCURRENCY})",
    )


# --- validation ---------------------------------------------------------------------------------


def validate_name(flag: str, value: str) -> str:
    if not value.strip():
        raise UsageError(f"{flag} must not be empty")
    if not NAME_PATTERN.match(value):
        raise UsageError(
            f"{flag} {value!r} is not valid: use 1-63 lowercase letters, digits and hyphens, starting with a "
            "letter or digit (it becomes a metric dimension and a table key)"
        )
    return value


def parse_models(value: str, known: Sequence[str]) -> tuple[str, ...]:
    """Comma-separated aliases, de-duplicated in order; each must be a route in the catalog."""
    models = tuple(dict.fromkeys(m.strip() for m in value.split(",") if m.strip()))
    if not models:
        raise UsageError("--models must name at least one model alias, e.g. --models chat-fast,embed")
    unknown = [m for m in models if m not in known]
    if unknown:
        raise UsageError(
            f"--models: unknown model alias{'es' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"the catalog's aliases are: {', '.join(sorted(known))}"
        )
    return models


def _positive(flag: str, value: float | None) -> None:
    if value is not None and (not math.isfinite(value) or value <= 0):
        raise UsageError(f"{flag} must be a number greater than 0, got {value:g}")


def catalog_config(catalog_path: str | None) -> GatewayConfig:
    """The gateway view of the model catalog (the packaged one unless a path is given)."""
    from ai_factory.catalog.model_catalog import CatalogError, ModelCatalog

    try:
        return ModelCatalog.load(catalog_path).gateway_config()
    except CatalogError as exc:
        raise UsageError(f"--catalog: invalid model catalog: {exc}") from exc


# --- stores -------------------------------------------------------------------------------------


def open_store(args: argparse.Namespace) -> KeyStore:
    if args.store == "local":
        from ai_factory.local.sqlite_store import SqliteKeyStore, default_db_path

        return SqliteKeyStore(default_db_path(args.state_dir))
    table = args.table or os.environ.get(KEYS_TABLE_ENV)
    if not table:
        raise UsageError(f"--table is required with --store aws (or set {KEYS_TABLE_ENV})")
    from aif_gateway.dynamo_store import DynamoKeyStore

    client = None
    if args.region:
        import boto3

        client = boto3.client("dynamodb", region_name=args.region)
    return DynamoKeyStore(table, client=client)


# --- output -------------------------------------------------------------------------------------


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat(timespec="seconds") if ts else None


def key_summary(record: ApiKeyRecord, now: datetime) -> dict[str, Any]:
    """What may be shown about a key: everything except its hash (and the plaintext, never stored)."""
    return {
        "key_id": record.key_id,
        "team": record.team,
        "feature": record.feature,
        "models": list(record.allowed_models),
        "monthly_budget_usd": record.monthly_budget_usd,
        "rate_limit_rpm": record.rate_limit_rpm,
        "tokens_per_minute": record.tokens_per_minute,
        "max_concurrency": record.max_concurrency,
        "state": record.state(now),
        "created_at": _iso(record.created_at),
        "expires_at": _iso(record.expires_at),
        "revoked_at": _iso(record.revoked_at),
        "description": record.description,
    }


def _print_new_key(
    plaintext: str,
    record: ApiKeyRecord,
    fmt: str,
    out: TextIO,
    note: str = "",
    extra: dict[str, Any] | None = None,
) -> None:
    if fmt == "json":
        data = {**key_summary(record, utc_now()), **(extra or {}), "api_key": plaintext}
        print(json.dumps(data, indent=2), file=out)
    else:
        expires = _iso(record.expires_at) or "never"
        print(
            f"{note}Created key {record.key_id} for {record.team}/{record.feature}\n"
            f"  models:      {', '.join(record.allowed_models)}\n"
            f"  budget:      {record.monthly_budget_usd:g} USD per month\n"
            f"  rate limit:  {record.rate_limit_rpm} requests per minute\n"
            f"  tokens:      {record.tokens_per_minute} per minute\n"
            f"  concurrency: {record.max_concurrency} requests in flight\n"
            f"  expires:     {expires}\n\n"
            f"API key: {plaintext}",
            file=out,
        )
    print(
        "WARNING: this is the only time the API key is shown; it cannot be shown again. "
        "Store it now (for example in AWS Secrets Manager).",
        file=sys.stderr,
    )


def _table(rows: list[dict[str, Any]]) -> str:
    headers = ["KEY ID", "TEAM", "FEATURE", "MODELS", "BUDGET USD", "RPM", "STATE", "EXPIRES"]
    cells = [
        [
            r["key_id"],
            r["team"],
            r["feature"],
            ",".join(r["models"]),
            f"{r['monthly_budget_usd']:g}",
            str(r["rate_limit_rpm"]),
            r["state"],
            r["expires_at"] or "never",
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in [headers, *cells]
    ]
    return "\n".join(lines)


# --- commands -----------------------------------------------------------------------------------


def cmd_create(args: argparse.Namespace, out: TextIO) -> int:
    team = validate_name("--team", args.team)
    feature = validate_name("--feature", args.feature)
    _positive("--budget", args.budget)
    _positive("--rate-limit", args.rate_limit)
    _positive("--tokens-per-minute", args.tokens_per_minute)
    _positive("--max-concurrency", args.max_concurrency)
    _positive("--expires-in-days", args.expires_in_days)
    models = parse_models(args.models, list(catalog_config(args.catalog).routes))
    store = open_store(args)
    now = utc_now()
    plaintext, key_id, key_hash = generate_key()
    record = ApiKeyRecord(
        key_id=key_id,
        key_hash=key_hash,
        team=team,
        feature=feature,
        allowed_models=models,
        monthly_budget_usd=float(args.budget),
        rate_limit_rpm=int(args.rate_limit),
        created_at=now,
        expires_at=now + timedelta(days=args.expires_in_days) if args.expires_in_days else None,
        description=args.description,
        clearance=args.clearance,
        tokens_per_minute=int(args.tokens_per_minute),
        max_concurrency=int(args.max_concurrency),
    )
    store.put(record)
    _print_new_key(plaintext, record, args.format, out)
    return 0


def cmd_list(args: argparse.Namespace, out: TextIO) -> int:
    if args.team is not None:
        validate_name("--team", args.team)
    now = utc_now()
    rows = [key_summary(r, now) for r in open_store(args).list(team=args.team)]
    if args.format == "json":
        print(json.dumps(rows, indent=2), file=out)
    elif rows:
        print(_table(rows), file=out)
    else:
        print("No keys." if args.team is None else f"No keys for team {args.team}.", file=out)
    return 0


def _existing(store: KeyStore, key_id: str) -> ApiKeyRecord:
    record = store.get(key_id)
    if record is None:
        raise CommandError(f"no key with ID {key_id!r} (see: ai-factory keys list)")
    return record


def cmd_revoke(args: argparse.Namespace, out: TextIO) -> int:
    store = open_store(args)
    now = utc_now()
    current = _existing(store, args.key_id)
    if current.state(now) == "revoked":
        print(f"Key {args.key_id} was already revoked at {_iso(current.revoked_at)}.", file=out)
        return 0
    try:
        store.revoke(args.key_id, now)
    except UnknownKeyError:
        raise CommandError(f"no key with ID {args.key_id!r} (see: ai-factory keys list)") from None
    ttl = GatewayConfig(routes={}).key_cache_ttl_s
    print(
        f"Revoked key {args.key_id} ({current.team}/{current.feature}). Running gateways stop accepting it "
        f"within {ttl:g} seconds (their key cache).",
        file=out,
    )
    return 0


def cmd_rotate(args: argparse.Namespace, out: TextIO) -> int:
    if args.grace_hours is None or not math.isfinite(args.grace_hours) or args.grace_hours < 0:
        raise UsageError(f"--grace-hours must be 0 or more, got {args.grace_hours:g}")
    _positive("--expires-in-days", args.expires_in_days)
    store = open_store(args)
    now = utc_now()
    old = _existing(store, args.key_id)
    if old.state(now) == "revoked":
        raise CommandError(
            f"key {args.key_id} is revoked; revoked keys are not rotated (create a new key with keys create)"
        )
    plaintext, key_id, key_hash = generate_key()
    new = ApiKeyRecord(
        key_id=key_id,
        key_hash=key_hash,
        team=old.team,
        feature=old.feature,
        allowed_models=old.allowed_models,
        monthly_budget_usd=old.monthly_budget_usd,
        rate_limit_rpm=old.rate_limit_rpm,
        created_at=now,
        expires_at=now + timedelta(days=args.expires_in_days) if args.expires_in_days else None,
        description=old.description,
        clearance=old.clearance,
        tokens_per_minute=old.tokens_per_minute,
        max_concurrency=old.max_concurrency,
        inference_profiles=dict(old.inference_profiles),  # the feature's profiles outlive its keys
    )
    store.put(new)  # the new key first: a failure below leaves two working keys, never zero
    grace_end = now + timedelta(hours=args.grace_hours)
    if old.expires_at is None or old.expires_at > grace_end:
        try:
            store.set_expiry(old.key_id, grace_end)
        except UnknownKeyError:
            raise CommandError(
                f"key {old.key_id} disappeared during rotation; new key {key_id} exists"
            ) from None
    old_end = min(grace_end, old.expires_at) if old.expires_at else grace_end
    note = "" if args.format == "json" else f"Old key {old.key_id} stops working at {_iso(old_end)}.\n"
    extra = {"replaces_key_id": old.key_id, "old_key_expires_at": _iso(old_end)}
    _print_new_key(plaintext, new, args.format, out, note=note, extra=extra)
    return 0


def cmd_update(args: argparse.Namespace, out: TextIO) -> int:
    """Change the limits on a key's record (the same record, so the hash and the secret are kept)."""
    changes: dict[str, Any] = {}
    for flag, field, cast in (
        ("--budget", "monthly_budget_usd", float),
        ("--rate-limit", "rate_limit_rpm", int),
        ("--tokens-per-minute", "tokens_per_minute", int),
        ("--max-concurrency", "max_concurrency", int),
    ):
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            _positive(flag, value)
            changes[field] = cast(value)
    if not changes:
        raise UsageError(
            "nothing to update: give --budget, --rate-limit, --tokens-per-minute or --max-concurrency"
        )
    store = open_store(args)
    updated = replace(_existing(store, args.key_id), **changes)
    store.put(updated)
    if args.format == "json":
        print(json.dumps(key_summary(updated, utc_now()), indent=2), file=out)
    else:
        ttl = GatewayConfig(routes={}).key_cache_ttl_s
        settings = ", ".join(f"{k}={v:g}" for k, v in changes.items())
        print(
            f"Updated key {updated.key_id} ({updated.team}/{updated.feature}): {settings}. Running gateways "
            f"apply it within {ttl:g} seconds (their key cache).",
            file=out,
        )
    return 0
