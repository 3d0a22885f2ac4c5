"""``ai-factory prompts``: register, inspect, diff, promote and roll back registered prompts.

The registry is MLflow (``--tracking-uri``, default ``$MLFLOW_TRACKING_URI`` or a SQLite store in
``$AI_FACTORY_HOME``). ``publish`` writes the runtime view the gateway reads; ``promote`` and
``rollback`` publish it too when ``--publish-to`` or ``$AIF_PROMPT_VIEW_URI`` names a destination.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
from collections.abc import Sequence
from typing import Any, TextIO

from ai_factory.cli.errors import CommandError, UsageError

# The registry modules are imported inside the commands: ``ai-factory --help`` stays fast.


def _registry(args: argparse.Namespace) -> Any:
    from ai_factory.prompts.registry import PromptRegistry

    return PromptRegistry(args.tracking_uri)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [list(headers), *rows]
    )


def _params_text(parameters: dict[str, Any]) -> str:
    return " ".join(f"{k}={json.dumps(v)}" for k, v in sorted(parameters.items())) or "-"


def _aliases_text(aliases: dict[str, int]) -> str:
    return ", ".join(f"{a}->v{v}" for a, v in aliases.items()) or "-"


def _check_name(name: str) -> None:
    from ai_factory.prompts.spec import NAME_PATTERN

    if not NAME_PATTERN.match(name):
        raise UsageError(f"NAME: {name!r} is not a prompt name (lowercase letters, digits and '-')")


def _check_alias(flag: str, alias: str) -> None:
    from ai_factory.prompts.registry import check_alias

    try:
        check_alias(alias)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from exc


def _registry_call(func: Any, *args: Any, **kwargs: Any) -> Any:
    """Map registry errors to exit codes: not found / refused -> 1 with the registry's message."""
    from ai_factory.prompts.registry import RegistryError

    try:
        return func(*args, **kwargs)
    except RegistryError as exc:
        raise CommandError(str(exc)) from exc


# --- argument parsing -------------------------------------------------------------------------------


def add_parser(subparsers: Any) -> None:
    """Register ``prompts`` and its subcommands on the top-level parser."""
    prompts = subparsers.add_parser("prompts", help="register, show, diff, promote and roll back prompts")
    sub = prompts.add_subparsers(dest="prompts_command", metavar="COMMAND", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite in $AI_FACTORY_HOME)",
    )
    fmt = argparse.ArgumentParser(add_help=False)
    fmt.add_argument(
        "--format", choices=("text", "json"), default="text", help="output format (default: text)"
    )
    publish_to = argparse.ArgumentParser(add_help=False)
    publish_to.add_argument(
        "--publish-to", help="also publish the runtime view here (default: $AIF_PROMPT_VIEW_URI if set)"
    )
    approver = argparse.ArgumentParser(add_help=False)
    approver.add_argument("--approved-by", help="who approves the move (default: $USER)")
    approver.add_argument("--git-commit", help="commit to record (default: git rev-parse HEAD, else unknown)")

    register = sub.add_parser(
        "register",
        parents=[common, fmt],
        help="register prompt files (a new version only when the content changed)",
    )
    register.add_argument(
        "paths", nargs="+", metavar="PATH", help="prompt files, or folders searched for prompts/*.yaml"
    )
    register.add_argument(
        "--catalog", help="model catalog to check each prompt's model against (default: built-in)"
    )
    register.set_defaults(run=cmd_register)

    ls = sub.add_parser("list", parents=[common, fmt], help="list registered prompts")
    ls.set_defaults(run=cmd_list)

    show = sub.add_parser("show", parents=[common, fmt], help="show one version (default: the latest)")
    show.add_argument("name", metavar="NAME")
    which = show.add_mutually_exclusive_group()
    which.add_argument("--version", type=int, help="version number")
    which.add_argument("--alias", help="alias, e.g. production")
    show.set_defaults(run=cmd_show)

    diff = sub.add_parser("diff", parents=[common], help="unified diff of two versions")
    diff.add_argument("name", metavar="NAME")
    diff.add_argument("v1", type=int, metavar="V1")
    diff.add_argument("v2", type=int, metavar="V2")
    diff.set_defaults(run=cmd_diff)

    promote = sub.add_parser(
        "promote",
        parents=[common, fmt, publish_to, approver],
        help="point an alias at a version (production needs a passing eval record)",
    )
    promote.add_argument("name", metavar="NAME")
    promote.add_argument("--version", type=int, required=True, help="version to promote")
    promote.add_argument("--to", dest="alias", required=True, metavar="ALIAS", help="alias, e.g. staging")
    promote.add_argument("--eval-run", help="MLflow run id of the passing eval of this version")
    promote.add_argument(
        "--allow-offline-eval",
        action="store_true",
        help="let an eval against the offline local gateway (echo model) unlock production: demos only",
    )
    promote.set_defaults(run=cmd_promote)

    rollback = sub.add_parser(
        "rollback",
        parents=[common, fmt, publish_to, approver],
        help="move an alias back to the version it pointed at before its latest move",
    )
    rollback.add_argument("name", metavar="NAME")
    rollback.add_argument("--alias", required=True, help="alias to roll back, e.g. production")
    rollback.set_defaults(run=cmd_rollback)

    history = sub.add_parser("history", parents=[common, fmt], help="deployment records, newest first")
    history.add_argument("name", metavar="NAME")
    history.add_argument("--alias", help="only this alias")
    history.set_defaults(run=cmd_history)

    publish = sub.add_parser("publish", parents=[common, fmt], help="publish the gateway's runtime view")
    publish.add_argument(
        "--to",
        dest="uri",
        help="file path or s3://bucket/key (default: $AIF_PROMPT_VIEW_URI or prompts.json)",
    )
    publish.add_argument("--kms-key-id", help="KMS key for S3 (default: $AIF_PROMPT_VIEW_KMS_KEY_ID)")
    publish.set_defaults(run=cmd_publish)


# --- commands ---------------------------------------------------------------------------------------


def cmd_register(args: argparse.Namespace, out: TextIO) -> int:
    from ai_factory.catalog.model_catalog import CatalogError, ModelCatalog
    from ai_factory.prompts.view import find_prompt_files, register_files

    missing = [p for p in args.paths if not os.path.exists(p)]
    if missing:
        raise UsageError(f"PATH: {missing[0]} does not exist")
    if not find_prompt_files(args.paths):
        raise UsageError("PATH: no prompt files found (folders are searched for prompts/*.yaml)")
    try:
        catalog = ModelCatalog.load(args.catalog)
    except CatalogError as exc:
        raise UsageError(f"--catalog: invalid model catalog: {exc}") from exc
    results = _registry_call(register_files, args.paths, _registry(args), catalog)
    if args.format == "json":
        print(json.dumps([r.to_dict() for r in results], indent=2), file=out)
    else:
        rows = [
            [
                str(r.path),
                r.status,
                r.name or "-",
                str(r.version) if r.version is not None else "-",
                r.error or (r.content_hash or "")[:19],
            ]
            for r in results
        ]
        print(_table(["FILE", "STATUS", "NAME", "VERSION", "HASH / ERROR"], rows), file=out)
    invalid = [r for r in results if r.status == "invalid"]
    if invalid:
        raise UsageError(f"{len(invalid)} invalid prompt file(s), nothing registered: {invalid[0].error}")
    return 0


def cmd_list(args: argparse.Namespace, out: TextIO) -> int:
    summaries = _registry_call(_registry(args).list)
    if args.format == "json":
        data = [
            {
                "name": s.name,
                "latest_version": s.latest_version,
                "model": s.model,
                "owner": s.owner,
                "aliases": s.aliases,
            }
            for s in summaries
        ]
        print(json.dumps(data, indent=2), file=out)
        return 0
    if not summaries:
        print("No prompts registered. Register some with: ai-factory prompts register PATH", file=out)
        return 0
    rows = [[s.name, str(s.latest_version), s.model, _aliases_text(s.aliases), s.owner] for s in summaries]
    print(_table(["NAME", "LATEST", "MODEL", "ALIASES", "OWNER"], rows), file=out)
    return 0


def _version_dict(info: Any) -> dict[str, Any]:
    return {
        "name": info.name,
        "version": info.version,
        "hash": info.content_hash,
        "model": info.model,
        "parameters": info.parameters,
        "variables": list(info.variables),
        "aliases": list(info.aliases),
        "owner": info.owner,
        "description": info.description,
        "eval_suite": info.eval_suite,
        "source": info.source,
        "created_at": info.created_at.isoformat().replace("+00:00", "Z"),
        "messages": info.messages,
    }


def cmd_show(args: argparse.Namespace, out: TextIO) -> int:
    _check_name(args.name)
    if args.alias:
        _check_alias("--alias", args.alias)
    info = _registry_call(_registry(args).get, args.name, version=args.version, alias=args.alias)
    if args.format == "json":
        print(json.dumps(_version_dict(info), indent=2), file=out)
        return 0
    fields = [
        ("version", str(info.version)),
        ("aliases", ", ".join(info.aliases) or "-"),
        ("hash", info.content_hash),
        ("model", info.model),
        ("parameters", _params_text(info.parameters)),
        ("variables", ", ".join(info.variables) or "-"),
        ("owner", info.owner or "-"),
        ("description", info.description or "-"),
        ("eval suite", info.eval_suite or "-"),
        ("source", info.source or "-"),
        ("registered", info.created_at.isoformat(timespec="seconds").replace("+00:00", "Z")),
    ]
    print(info.name, file=out)
    for label, value in fields:
        print(f"  {label + ':':<13}{value}", file=out)
    print("\nmessages:", file=out)
    print(_messages_text(info.messages, indent="  "), file=out)
    return 0


def _messages_text(messages: list[dict[str, str]], indent: str = "") -> str:
    lines = []
    for index, message in enumerate(messages):
        lines.append(f"{indent}[{index}] {message['role']}")
        lines.extend(f"{indent}    {line}".rstrip() for line in message["content"].splitlines() or [""])
    return "\n".join(lines)


def _version_text(info: Any) -> list[str]:
    head = [f"model: {info.model}", f"parameters: {_params_text(info.parameters)}", "messages:"]
    return [*head, *_messages_text(info.messages, indent="  ").splitlines()]


def cmd_diff(args: argparse.Namespace, out: TextIO) -> int:
    _check_name(args.name)
    registry = _registry(args)
    old = _registry_call(registry.get, args.name, version=args.v1)
    new = _registry_call(registry.get, args.name, version=args.v2)
    changes = []
    if old.model != new.model:
        changes.append(f"model: {old.model} -> {new.model}")
    for key in sorted(set(old.parameters) | set(new.parameters)):
        before, after = old.parameters.get(key), new.parameters.get(key)
        if before != after:
            show = lambda v: "(unset)" if v is None else json.dumps(v)  # noqa: E731
            changes.append(f"parameters.{key}: {show(before)} -> {show(after)}")
    if old.variables != new.variables:
        changes.append(f"variables: {', '.join(old.variables) or '-'} -> {', '.join(new.variables) or '-'}")
    print(
        f"{args.name}: version {old.version} ({old.content_hash[:19]}) "
        f"-> {new.version} ({new.content_hash[:19]})",
        file=out,
    )
    if old.content_hash == new.content_hash:
        print("identical content", file=out)
        return 0
    for change in changes:
        print(f"  {change}", file=out)
    diff = difflib.unified_diff(
        _version_text(old),
        _version_text(new),
        fromfile=f"{args.name} v{old.version}",
        tofile=f"{args.name} v{new.version}",
        lineterm="",
    )
    print("\n".join(diff), file=out)
    return 0


def _publish_after_move(args: argparse.Namespace, registry: Any, out: TextIO) -> str | None:
    from ai_factory.prompts.view import VIEW_URI_ENV, build_view, publish_view

    uri = args.publish_to or os.environ.get(VIEW_URI_ENV)
    if not uri:
        return None
    try:
        return publish_view(build_view(registry), uri)
    except Exception as exc:
        raise CommandError(
            f"the alias moved, but publishing the runtime view to {uri} failed "
            f"({type(exc).__name__}: {exc}); "
            "retry with: ai-factory prompts publish --to URI"
        ) from exc


def _when(when: Any) -> str:
    return str(when.isoformat(timespec="seconds").replace("+00:00", "Z"))


def _record_text(record: Any, published: str | None) -> str:
    verb = "promoted" if record.action == "promote" else "rolled back"
    before = f"v{record.from_version}" if record.from_version is not None else "(unset)"
    evaluation = (
        f"{record.eval_run_id} ({'passed' if record.eval_passed else 'failed'})"
        if record.eval_run_id
        else "none"
    )
    lines = [
        f"{verb} {record.name}@{record.alias}: {before} -> v{record.to_version}",
        f"  eval run:     {evaluation}",
        f"  approved by:  {record.approved_by}",
        f"  git commit:   {record.git_commit}",
        f"  record:       {record.run_id} ({_when(record.when)})",
    ]
    if published:
        lines.append(f"  published:    {published}")
    return "\n".join(lines)


def cmd_promote(args: argparse.Namespace, out: TextIO) -> int:
    _check_name(args.name)
    _check_alias("--to", args.alias)
    if args.version < 1:
        raise UsageError(f"--version must be >= 1, got {args.version}")
    registry = _registry(args)
    record = _registry_call(
        registry.promote,
        args.name,
        args.version,
        args.alias,
        approved_by=args.approved_by,
        git_commit=args.git_commit,
        eval_run_id=args.eval_run,
        allow_offline_eval=args.allow_offline_eval,
    )
    if record is None:
        message = f"{args.name}@{args.alias} already points at version {args.version}; nothing to do"
        print(
            json.dumps({"changed": False, "message": message}) if args.format == "json" else message, file=out
        )
        return 0
    published = _publish_after_move(args, registry, out)
    if args.format == "json":
        print(
            json.dumps({"changed": True, "record": record.to_dict(), "published": published}, indent=2),
            file=out,
        )
    else:
        print(_record_text(record, published), file=out)
    return 0


def cmd_rollback(args: argparse.Namespace, out: TextIO) -> int:
    _check_name(args.name)
    _check_alias("--alias", args.alias)
    registry = _registry(args)
    record = _registry_call(
        registry.rollback, args.name, args.alias, approved_by=args.approved_by, git_commit=args.git_commit
    )
    published = _publish_after_move(args, registry, out)
    if args.format == "json":
        print(
            json.dumps({"changed": True, "record": record.to_dict(), "published": published}, indent=2),
            file=out,
        )
    else:
        print(_record_text(record, published), file=out)
    return 0


def cmd_history(args: argparse.Namespace, out: TextIO) -> int:
    _check_name(args.name)
    if args.alias:
        _check_alias("--alias", args.alias)
    registry = _registry(args)
    _registry_call(registry.versions, args.name)  # unknown prompt -> exit 1 with a clear message
    records = _registry_call(registry.deployments, args.name, alias=args.alias)
    if args.format == "json":
        print(json.dumps([r.to_dict() for r in records], indent=2), file=out)
        return 0
    if not records:
        print(f"{args.name}: no alias has been moved yet", file=out)
        return 0
    rows = [
        [
            r.when.isoformat(timespec="seconds").replace("+00:00", "Z"),
            r.action,
            r.alias,
            f"v{r.from_version}" if r.from_version is not None else "-",
            f"v{r.to_version}",
            r.approved_by,
            (f"{r.eval_run_id[:12]} {'pass' if r.eval_passed else 'FAIL'}" if r.eval_run_id else "-"),
            r.git_commit[:12],
        ]
        for r in records
    ]
    print(_table(["WHEN", "ACTION", "ALIAS", "FROM", "TO", "APPROVED BY", "EVAL", "COMMIT"], rows), file=out)
    return 0


def cmd_publish(args: argparse.Namespace, out: TextIO) -> int:
    from ai_factory.prompts.view import build_view, default_view_uri, publish_view

    uri = args.uri or default_view_uri()
    registry = _registry(args)
    view = _registry_call(build_view, registry)
    try:
        where = publish_view(view, uri, kms_key_id=args.kms_key_id)
    except ValueError as exc:
        raise UsageError(f"--to: {exc}") from exc
    versions = sum(len(p["versions"]) for p in view["prompts"].values())
    if args.format == "json":
        print(
            json.dumps({"published": where, "prompts": len(view["prompts"]), "versions": versions}), file=out
        )
    else:
        print(f"published {len(view['prompts'])} prompt(s), {versions} version(s) to {where}", file=out)
    return 0
