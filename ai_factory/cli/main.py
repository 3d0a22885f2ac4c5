"""The ``ai-factory`` command: the local gateway (``serve``, ``dev``), keys, prompts, models, evals,
scaffolding (``new feature``), account checks before the first deploy (``preflight``) and reports.
``ai-factory`` alone prints the commands.

Exit codes: 0 success, 1 the command could not be carried out (unknown key, store or network failure),
2 invalid usage (the message names the flag and the reason).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from ai_factory.cli import (
    dev,
    feedback,
    keys,
    knowledge,
    lead_time,
    lineage,
    models,
    new,
    preflight,
    prompts,
    report,
    usage,
)
from ai_factory.cli import eval as eval_cmd
from ai_factory.cli.errors import CommandError, UsageError

PROG = "ai-factory"


def _add_serve(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve", help="run the gateway locally (OpenAI-compatible API at http://HOST:PORT/v1)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on (default: 8080)")
    serve.add_argument(
        "--state-dir", help="keys and usage folder (default: $AI_FACTORY_HOME or ~/.ai-factory)"
    )
    serve.add_argument("--catalog", help="model catalog YAML (default: the built-in catalog)")
    serve.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow binding to a non-loopback address (exposes the gateway to other machines)",
    )
    serve.add_argument("--access-log", action="store_true", help="log every request to stderr")
    serve.add_argument(
        "--assistant",
        action="store_true",
        help="also serve the governed assistant's page at / on offline models, with a sign-in stub "
        "(state: --state-dir, default .ai-factory/assistant)",
    )
    serve.add_argument(
        "--assistant-docs",
        metavar="DIR",
        help="Markdown documents the assistant answers from (default: the built-in samples)",
    )
    serve.set_defaults(run=cmd_serve)


def cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    from ai_factory.catalog.model_catalog import CatalogError
    from ai_factory.local.server import RemoteBindError, serve

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {args.port}")
    if args.assistant_docs and not args.assistant:
        raise UsageError("--assistant-docs needs --assistant")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.assistant:
        return _serve_assistant(args, out)
    try:
        serve(
            args.host,
            args.port,
            args.state_dir,
            args.catalog,
            allow_remote=args.allow_remote,
            access_log=args.access_log,
        )
    except RemoteBindError as exc:
        raise UsageError(f"--host: {exc}") from exc
    except CatalogError as exc:
        raise UsageError(f"--catalog: invalid model catalog: {exc}") from exc
    except OSError as exc:
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from exc
    return 0


def _serve_assistant(args: argparse.Namespace, out: TextIO) -> int:
    from ai_factory.local.assistant import AssistantSetupError, start_local_assistant
    from ai_factory.local.server import RemoteBindError, check_host

    try:
        check_host(args.host, args.allow_remote)
        assistant = start_local_assistant(
            args.state_dir or ".ai-factory/assistant",
            documents=args.assistant_docs,
            host=args.host,
            port=args.port,
            catalog_path=args.catalog,
        )
    except RemoteBindError as exc:
        raise UsageError(f"--host: {exc}") from exc
    except AssistantSetupError as exc:
        raise UsageError(str(exc)) from exc
    except OSError as exc:
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from exc
    groups = ", ".join(f"{g} ({c})" for g, c in sorted(assistant.clearance_groups.items()))
    print(f"Assistant on {assistant.url} (offline models; sign-in stub groups: {groups})", file=out)
    print(f"Gateway on {assistant.url}v1; Ctrl-C stops both.", file=out, flush=True)
    dev.run_until_stopped(assistant.close)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="AI Factory: local gateway and API keys.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_serve(sub)
    keys.add_parser(sub)
    prompts.add_parser(sub)
    models.add_parser(sub)
    eval_cmd.add_parser(sub)
    feedback.add_parser(sub)
    usage.add_parser(sub)
    report.add_parser(sub)
    lineage.add_parser(sub)
    dev.add_parser(sub)
    new.add_parser(sub)
    preflight.add_parser(sub)
    lead_time.add_parser(sub)
    knowledge.add_parser(sub)
    return parser


# A group command given without its subcommand does its most common action, or prints its help.
GROUP_DEFAULTS = {"models": "list", "keys": "list", "prompts": "list"}
GROUP_HELP = frozenset({"new"})


def with_default_subcommand(argv: list[str]) -> list[str]:
    """``models`` -> ``models list`` (options after the group name are kept: ``models --catalog X``)."""
    if argv and argv[0] in GROUP_HELP and len(argv) == 1:
        return [argv[0], "--help"]  # argparse prints it and exits 0
    bare = bool(argv) and argv[0] in GROUP_DEFAULTS and (len(argv) == 1 or argv[1].startswith("-"))
    if bare and not {"-h", "--help"} & set(argv[1:]):
        return [argv[0], GROUP_DEFAULTS[argv[0]], *argv[1:]]
    return argv


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the CLI and return its exit code (the console script exits with it)."""
    out = out or sys.stdout
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        parser.print_help(out)
        return 0
    try:
        args = parser.parse_args(with_default_subcommand(argv))
    except SystemExit as exc:  # argparse already printed usage or help
        return exc.code if isinstance(exc.code, int) else 2
    command = " ".join(filter(None, [PROG, args.command, getattr(args, "keys_command", None)]))
    try:
        return int(args.run(args, out))
    except UsageError as exc:
        print(f"{command}: error: {exc}", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"{command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # Store failures (DynamoDB unreachable, no AWS credentials, SQLite locked): one line, no traceback.
        print(f"{command}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
