"""``ai-factory serve``: the gateway on a laptop, offline, running the same code as the Lambda.

The HTTP server is the runtime's own (``aif_gateway.http_server``), the one the deployed Lambda runs
behind the Lambda Web Adapter, so streaming, framing and errors behave locally as they do in AWS. This
module adds the local wiring: SQLite stores for keys and usage (``sqlite_store``), the prompt view in
the state folder, knowledge bases registered in ``<state>/knowledge/`` (searched offline,
``aif_gateway.offline_retriever``), and the loopback-only default.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import threading
from pathlib import Path

from ai_factory.local.sqlite_store import (
    SqliteKeyStore,
    SqliteLedger,
    SqliteQuotaStore,
    default_db_path,
    default_state_dir,
)
from aif_gateway import trace_export
from aif_gateway.config import GatewayConfig
from aif_gateway.http_server import GatewayHTTPServer, LengthRequired, ProxyHandler

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "LengthRequired",
    "LocalGatewayServer",
    "RemoteBindError",
    "build_gateway",
    "check_host",
    "is_loopback",
    "prompt_view_path",
    "serve",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
# The prompt view `ai-factory prompts publish` writes into the state folder; a stat a second is cheap,
# so a newly published view is served at once rather than after the cloud's 60 s.
PROMPT_VIEW_FILE = "prompts.json"
KNOWLEDGE_FOLDER = "knowledge"  # <state>/knowledge/<name>/knowledge-base.json (docs/rag.md, local mode)
LOCAL_PROMPT_VIEW_TTL_S = 1.0


class RemoteBindError(ValueError):
    """A non-loopback address was asked for without allow_remote."""


def is_loopback(host: str) -> bool:
    """True for localhost and loopback IP literals (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_host(host: str, allow_remote: bool) -> None:
    """Refuse to expose the gateway beyond this machine unless asked to explicitly."""
    if not allow_remote and not is_loopback(host):
        raise RemoteBindError(
            f"refusing to listen on {host!r}: local mode binds to loopback only (127.0.0.1, ::1, localhost). "
            "Pass --allow-remote to expose it to other machines; anyone who can reach it can spend your "
            "budget with a valid key and, for Bedrock routes, your AWS credentials."
        )


def build_gateway(
    state_dir: str | os.PathLike[str] | None = None,
    catalog_path: str | os.PathLike[str] | None = None,
    config: GatewayConfig | None = None,
) -> tuple[ProxyHandler, GatewayConfig]:
    """The real gateway over the SQLite stores in ``state_dir`` with the catalog's routes, serving the
    registered prompts of ``<state_dir>/prompts.json`` when that file exists."""
    from aif_gateway.app import Gateway  # deferred: tests may serve a stub without it
    from aif_gateway.offline_retriever import LocalKnowledgeBases, LocalRetriever
    from aif_gateway.prompt_view import PromptViewSource
    from aif_gateway.retrieval import RetrievalService

    if config is None:
        from ai_factory.catalog.model_catalog import ModelCatalog

        config = ModelCatalog.load(catalog_path).gateway_config()
    db = default_db_path(state_dir)
    prompts = PromptViewSource(prompt_view_path(state_dir), ttl_s=LOCAL_PROMPT_VIEW_TTL_S)
    knowledge = LocalKnowledgeBases(knowledge_path(state_dir))
    gateway = Gateway(
        config,
        keys=SqliteKeyStore(db),
        ledger=SqliteLedger(db),
        prompts=prompts,
        quota=SqliteQuotaStore(db),  # limits shared with every local gateway on the same state folder
        retrieval=RetrievalService(knowledge, LocalRetriever(knowledge)),
    )
    return gateway, config


def knowledge_path(state_dir: str | os.PathLike[str] | None = None) -> Path:
    """``knowledge/`` in ``state_dir``: the local knowledge-base registrations."""
    folder = Path(state_dir).expanduser() if state_dir else default_state_dir()
    return folder / KNOWLEDGE_FOLDER


def prompt_view_path(state_dir: str | os.PathLike[str] | None = None) -> Path:
    """``prompts.json`` in ``state_dir`` (default: ``$AI_FACTORY_HOME`` or ``~/.ai-factory``)."""
    folder = Path(state_dir).expanduser() if state_dir else default_state_dir()
    return folder / PROMPT_VIEW_FILE


class LocalGatewayServer(GatewayHTTPServer):
    """The local gateway on a background thread; ``port=0`` picks a free port (for tests).

    >>> server = LocalGatewayServer(port=0, state_dir=tmp).start()   # doctest: +SKIP
    >>> server.url                                                     # doctest: +SKIP
    'http://127.0.0.1:54321'
    >>> server.shutdown()                                              # doctest: +SKIP
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        state_dir: str | os.PathLike[str] | None = None,
        catalog_path: str | os.PathLike[str] | None = None,
        *,
        config: GatewayConfig | None = None,
        gateway: ProxyHandler | None = None,
        allow_remote: bool = False,
        access_log: bool = False,
    ) -> None:
        check_host(host, allow_remote)
        if gateway is None:
            gateway, config = build_gateway(state_dir, catalog_path, config)
        super().__init__(
            gateway,
            host,
            port,
            max_body_bytes=config.max_body_bytes if config else None,
            access_log=access_log,
        )
        self.state_dir = Path(state_dir) if state_dir else None

    def start(self) -> LocalGatewayServer:
        super().start()
        return self

    def __enter__(self) -> LocalGatewayServer:
        return self.start()


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    state_dir: str | os.PathLike[str] | None = None,
    catalog_path: str | os.PathLike[str] | None = None,
    *,
    allow_remote: bool = False,
    access_log: bool = False,
) -> None:
    """Run the local gateway in the foreground until Ctrl-C. ``AIF_TRACES_EXPORTER=console`` prints each
    request's spans (``aif_gateway.trace_export``); by default nothing is traced."""
    trace_export.configure()
    server = LocalGatewayServer(
        host, port, state_dir, catalog_path, allow_remote=allow_remote, access_log=access_log
    )
    print(f"AI Factory local gateway on {server.url}/v1 (state: {default_db_path(state_dir)})", flush=True)
    if threading.current_thread() is threading.main_thread():
        # Stop cleanly on `kill`, as on Ctrl-C (the database needs no flush, but the socket closes now).
        signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
