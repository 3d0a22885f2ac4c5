"""``ai-factory knowledge register``: a knowledge base for the local gateway (``ai-factory serve``).

Writes ``<state>/knowledge/<name>/knowledge-base.json``: the registration a ``RagFeature`` writes to SSM in
AWS, plus the folder of documents (with ``.metadata.json`` sidecars, the layout the knowledge-base sync
writes to S3) that the offline retriever searches. The local gateway reads it on every request, so no
restart is needed. See ``docs/rag.md`` ("Local mode").
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any, TextIO

from ai_factory.cli.errors import UsageError
from aif_gateway.contract import CLEARANCE_LEVELS

NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
PAIR = re.compile(r"^[a-z0-9][a-z0-9-]*/[a-z0-9][a-z0-9-]*$")


def add_parser(subparsers: Any) -> None:
    """Register ``knowledge`` on the top-level parser."""
    knowledge = subparsers.add_parser("knowledge", help="knowledge bases of the local gateway")
    sub = knowledge.add_subparsers(dest="knowledge_command", metavar="COMMAND", required=True)
    register = sub.add_parser("register", help="serve a folder of documents as a knowledge base locally")
    register.add_argument("--name", required=True, help="the knowledge base name callers send")
    register.add_argument(
        "--documents", required=True, help="folder of documents and .metadata.json sidecars"
    )
    register.add_argument(
        "--allow", action="append", required=True, metavar="TEAM/FEATURE", help="a feature that may query it"
    )
    register.add_argument(
        "--classification", choices=CLEARANCE_LEVELS, required=True, help="the dataset's classification"
    )
    register.add_argument(
        "--state-dir", help="local state folder (default: $AI_FACTORY_HOME or ~/.ai-factory)"
    )
    register.set_defaults(run=cmd_register)


def cmd_register(args: argparse.Namespace, out: TextIO) -> int:
    from ai_factory.local.server import knowledge_path
    from aif_gateway.offline_retriever import register_local

    if not NAME.match(args.name):
        raise UsageError(f"--name {args.name!r}: use 1-63 lowercase letters, digits and hyphens")
    bad = [a for a in args.allow if not PAIR.match(a)]
    if bad:
        raise UsageError(f"--allow {bad[0]!r}: expected TEAM/FEATURE")
    documents = Path(args.documents)
    if not documents.is_dir():
        raise UsageError(f"--documents {args.documents!r} is not a folder")
    path = register_local(
        knowledge_path(args.state_dir), args.name, documents, args.allow, args.classification
    )
    print(f"knowledge base {args.name} registered: {path}", file=out)
    return 0
