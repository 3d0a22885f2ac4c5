"""A real local gateway (``LocalGatewayServer``) on 127.0.0.1, with keys created through the CLI."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ai_factory.cli.main import main
from ai_factory.local.server import LocalGatewayServer

# The built-in echo routes plus a priced one, so that a budget can be exhausted offline.
# The echo doubles are candidates routed under a waiver, as in the shipped catalog.
CATALOG = """\
models:
  - {name: echo, provider: echo, modality: chat, model_id: echo, status: candidate, prices: {},
     waiver: {reason: offline test double, approved_by: tests@example.com, approved_on: 2026-12-03}}
  - {name: echo-embed, provider: echo, modality: embedding, model_id: echo-embed, status: approved,
     prices: {}}
  - name: echo-priced
    provider: echo
    modality: chat
    model_id: echo
    status: candidate
    waiver: {reason: offline test double, approved_by: tests@example.com, approved_on: 2026-12-03}
    prices: {input: 10000.0, output: 10000.0}   # USD per 1M tokens: a cent per token
routes:
  - {alias: echo, targets: [echo]}
  - {alias: echo-embed, targets: [echo-embed]}
  - {alias: echo-priced, targets: [echo-priced]}
"""


@dataclass
class LocalGateway:
    server: LocalGatewayServer
    state_dir: Path
    catalog: Path

    @property
    def base_url(self) -> str:
        return f"{self.server.url}/v1"

    def create_key(
        self,
        feature: str,
        models: str = "echo,echo-embed",
        team: str = "e2e",
        *extra: str,
    ) -> str:
        """A new key made by ``ai-factory keys create``; returns the plaintext."""
        out = io.StringIO()
        with contextlib.redirect_stderr(io.StringIO()):
            code = main(
                [
                    "keys", "create", "--team", team, "--feature", feature, "--models", models,
                    "--state-dir", str(self.state_dir), "--catalog", str(self.catalog), "--format", "json",
                    *extra,
                ],
                out=out,
            )  # fmt: skip
        assert code == 0, out.getvalue()
        return str(json.loads(out.getvalue())["api_key"])


@pytest.fixture(scope="session")
def local_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalGateway]:
    root = tmp_path_factory.mktemp("local-gateway")
    catalog = root / "models.yaml"
    catalog.write_text(CATALOG, encoding="utf-8")
    state_dir = root / "state"
    server = LocalGatewayServer("127.0.0.1", 0, state_dir=state_dir, catalog_path=catalog).start()
    try:
        yield LocalGateway(server, state_dir, catalog)
    finally:
        server.shutdown()


@pytest.fixture
def make_key(local_gateway: LocalGateway, request: pytest.FixtureRequest) -> Callable[..., str]:
    """Keys for a feature named after the test, so budgets and rate limits do not leak between tests."""
    counter = iter(range(1000))

    def make(models: str = "echo,echo-embed", *extra: str) -> str:
        name = request.node.name.lower().replace("_", "-")
        feature = "".join(c for c in name if c.isalnum() or c == "-")[:50].strip("-") + f"-{next(counter)}"
        return local_gateway.create_key(feature, models, "e2e", *extra)

    return make
