"""``ai-factory dev TEAM_DIR``: the team's prompts served by a local gateway on offline models, in one step.

    ai-factory dev features/billing [--port 8080] [--alias staging] [--offline-answers FILE]

Registers the prompt files under TEAM_DIR in a local registry, points the alias at each new version,
publishes the runtime view, creates a local key for the team and serves every route on the offline
model until Ctrl-C, after printing the openai-SDK code that calls the first prompt. State lives in
``--state-dir`` (default ``.ai-factory/dev``, ignored by git). See ``ai_factory.local.dev_session``.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Callable
from typing import Any, TextIO

from ai_factory.cli.errors import CommandError, UsageError


def add_parser(subparsers: Any) -> None:
    """``ai-factory dev``."""
    dev = subparsers.add_parser(
        "dev",
        help="register a team's prompts and serve them locally on offline models (prints an SDK snippet)",
        description="One step from prompt files to a local answer: register, move the alias, publish, "
        "create a key, serve every route on the offline model.",
    )
    dev.add_argument("team_dir", metavar="TEAM_DIR", help="the team's folder, e.g. features/billing")
    dev.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default: 127.0.0.1)")
    dev.add_argument("--port", type=int, default=8080, help="port (default: 8080; 0 picks a free one)")
    dev.add_argument(
        "--alias", default="staging", help="the alias moved to each new version (default: staging)"
    )
    dev.add_argument("--feature", default="dev", help="feature name on the local key (default: dev)")
    dev.add_argument("--state-dir", help="registry, keys and usage folder (default: .ai-factory/dev)")
    dev.add_argument(
        "--offline-answers", metavar="FILE", help="canned answers for the offline model (YAML rules)"
    )
    dev.set_defaults(run=cmd_dev)


def cmd_dev(args: argparse.Namespace, out: TextIO) -> int:
    from ai_factory.cli.eval import load_offline_script
    from ai_factory.local.dev_session import DevSessionError, start_dev_session
    from ai_factory.local.server import RemoteBindError
    from ai_factory.prompts.registry import RegistryError

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {args.port}")
    script = load_offline_script(args.offline_answers)
    try:
        session = start_dev_session(
            args.team_dir,
            state_dir=args.state_dir,
            alias=args.alias,
            feature=args.feature,
            host=args.host,
            port=args.port,
            script=script,
        )
    except (DevSessionError, RemoteBindError) as exc:
        raise UsageError(str(exc)) from exc
    except RegistryError as exc:
        raise CommandError(f"prompt registry: {exc}") from exc
    except OSError as exc:
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from exc
    print(f"Local gateway on {session.base_url} (offline models; state: {session.state_dir})", file=out)
    for prompt in session.prompts:
        print(f"  prompt {prompt.name} v{prompt.version} @{session.alias}  model {prompt.model}", file=out)
    print("\nCall it with the openai SDK:\n", file=out)
    print(session.snippet(), file=out)
    print("Ctrl-C stops it.", file=out, flush=True)
    run_until_stopped(session.close)
    return 0


def run_until_stopped(close: Callable[[], None]) -> None:
    """Block until Ctrl-C or SIGTERM (a server runs on its own thread meanwhile), then ``close``."""
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        close()
