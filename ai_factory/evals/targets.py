"""Targets: what an eval case is run against. ``Target.run(suite, case) -> CaseOutput``.

- ``GatewayTarget``: an AI Factory gateway over HTTP (``.../v1``), the way product code calls it.
  Registered prompts are sent as a prompt reference and rendered by the gateway; inline suites send
  their messages rendered here. Retries 429/503 and connection failures with capped exponential
  backoff and jitter, honouring ``Retry-After``; other errors become ``CaseOutput.error``.
- ``LocalTarget``: the real gateway code in this process (``LocalGatewayServer`` on 127.0.0.1:0, a
  temporary state folder and key), with every route served by the offline model (cases' canned
  ``offline_answer``s, a JSON mode for ``response_format``, else echo). Prompts are
  rendered here from the registry's version (when a registry is given) or from the prompt file next to
  the suite, and sent as inline messages: the local server has no registry of its own.
- ``BedrockTarget``: Bedrock Converse directly (no gateway), priced from the model catalog.

Targets are called from several threads at once; HTTP goes through ``gateway_http.GatewayHttpClient``
(one keep-alive connection per thread).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ai_factory.evals.gateway_http import (
    DEFAULT_ATTEMPTS,
    DEFAULT_BACKOFF_S,
    DEFAULT_TIMEOUT_S,
    GatewayConnectionError,
    GatewayHttpClient,
    HttpAnswer,
)

# The target's retry settings are gateway_http's defaults (kept importable here under their old names).
from ai_factory.evals.gateway_http import DEFAULT_MAX_BACKOFF_S as MAX_BACKOFF_S
from ai_factory.evals.gateway_http import DEFAULT_MAX_RETRY_AFTER_S as MAX_RETRY_AFTER_S
from ai_factory.evals.gateway_http import DEFAULT_RETRY_STATUSES as RETRY_STATUSES
from ai_factory.evals.model import Case, CaseOutput, PromptRef, Suite
from ai_factory.local.offline import create_local_key, offline_config, offline_gateway
from aif_gateway.prompt_template import PromptVariablesError, extract_variables, render_messages

UNRESOLVED = "unresolved"


class TargetError(Exception):
    """A target cannot be set up (no key, unknown model alias, unreadable prompt): a usage problem."""


class Target(Protocol):
    """Runs one case once. Implementations must be safe to call from several threads."""

    name: str

    def run(self, suite: Suite, case: Case) -> CaseOutput: ...


# --- the prompt under test ------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedPrompt:
    """The prompt a suite tests, pinned: its template when known and its registry version when known."""

    name: str
    version: int | None = None  # the registry's number; None when no registry was asked
    alias: str | None = None  # what the suite (or --prompt-alias) asked for
    messages: tuple[dict[str, Any], ...] = ()  # the template, when it is rendered on this side
    model: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # "registry", a prompt file path, or "" (the gateway renders it)

    @property
    def version_label(self) -> str:
        """The version as logged: the number, or ``unresolved``."""
        return str(self.version) if self.version is not None else UNRESOLVED


def find_prompt_file(suite_path: Path, name: str) -> Path | None:
    """The prompt file named ``name`` next to a suite (``<feature>/prompts/`` beside ``<feature>/evals/``)."""
    from ai_factory.prompts.spec import PromptFileError, load_prompt_file

    folder = suite_path.resolve().parent.parent / "prompts"
    direct = folder / f"{name}.yaml"
    candidates = [direct] if direct.is_file() else []
    candidates += sorted(p for p in folder.glob("*.y*ml") if p != direct) if folder.is_dir() else []
    for path in candidates:
        try:
            if load_prompt_file(path).name == name:
                return path
        except PromptFileError:
            continue
    return None


def resolve_prompt(
    suite: Suite,
    registry: Any = None,
    *,
    version: int | None = None,
    alias: str | None = None,
    need_template: bool = False,
) -> ResolvedPrompt | None:
    """Pin the suite's prompt (``version``/``alias`` override the suite's reference).

    With a ``registry`` (a ``PromptRegistry``) the reference is resolved to a version number and its
    template. Without one, and when the template is needed (targets that render locally), the prompt
    file next to the suite is used and the version stays unresolved. ``TargetError`` when it cannot be
    resolved. ``None`` when the suite has no prompt.
    """
    ref = suite.prompt
    if ref is None:
        return None
    if version is not None or alias is not None:
        ref = PromptRef(ref.name, version=version, alias=alias)
    if registry is not None:
        from ai_factory.prompts.registry import RegistryError

        try:
            info = registry.get(ref.name, version=ref.version, alias=ref.alias)
        except RegistryError as exc:
            raise TargetError(f"prompt {ref.name}: {exc}") from exc
        return ResolvedPrompt(
            ref.name,
            info.version,
            ref.alias,
            tuple(dict(m) for m in info.messages),
            info.model,
            dict(info.parameters),
            "registry",
        )
    if not need_template:
        return ResolvedPrompt(ref.name, ref.version, ref.alias)
    from ai_factory.prompts.spec import PromptFileError, load_prompt_file

    path = find_prompt_file(suite.path, ref.name)
    if path is None:
        raise TargetError(
            f"prompt {ref.name}: no registry given and no prompt file named {ref.name!r} in "
            f"{suite.path.resolve().parent.parent / 'prompts'} (pass --tracking-uri to use the registry)"
        )
    try:
        spec = load_prompt_file(path)
    except PromptFileError as exc:
        raise TargetError(str(exc)) from exc
    return ResolvedPrompt(
        ref.name,
        None,
        ref.alias,
        tuple(dict(m) for m in spec.messages),
        spec.model,
        dict(spec.parameters),
        str(path),
    )


def render_case(suite: Suite, case: Case, prompt: ResolvedPrompt | None) -> list[dict[str, Any]]:
    """The chat messages for one case: the template (the prompt's, or the suite's inline one) rendered
    with the case's vars, then the case's own messages. ``PromptVariablesError`` if vars do not fit."""
    template = list(prompt.messages) if prompt is not None else list(suite.messages)
    if not template:
        return [dict(m) for m in case.messages]
    if prompt is None:
        # Inline suites may carry vars that only assertions use: pass the template's own.
        names = set(extract_variables(template))
        variables: Mapping[str, Any] = {k: v for k, v in case.vars.items() if k in names}
    else:
        variables = case.vars
    return render_messages(template, variables) + [dict(m) for m in case.messages]


def input_text(prompt: ResolvedPrompt | None) -> Callable[[Suite, Case], str | None]:
    """What an llm-judge sees as a case's input: the rendered messages when the template is known
    here, else ``None`` (the assertion then shows the vars)."""

    def text(suite: Suite, case: Case) -> str | None:
        if (prompt is None or not prompt.messages) and not suite.messages:
            return None
        try:
            messages = render_case(suite, case, prompt)
        except PromptVariablesError:
            return None
        return "\n\n".join(f"[{m['role']}] {m['content']}" for m in messages)

    return text


# --- gateway over HTTP ----------------------------------------------------------------------------


def _error_text(answer: HttpAnswer) -> str:
    try:
        error = json.loads(answer.body)["error"]
        code = error.get("code") or error.get("type") or ""
        return f"HTTP {answer.status} {code}: {error.get('message', '')}".strip()
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"HTTP {answer.status}: {answer.body[:200].decode('utf-8', 'replace')}"


class GatewayTarget:
    """Chat completions against a gateway at ``base_url`` (``http(s)://host[:port]/v1``)."""

    name = "gateway"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        prompt: ResolvedPrompt | None = None,
        render_locally: bool = False,
        model_override: str | None = None,
        attempts: int = DEFAULT_ATTEMPTS,
        backoff_s: float = DEFAULT_BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
        max_retry_after_s: float = MAX_RETRY_AFTER_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if attempts < 1:
            raise TargetError("attempts must be at least 1")
        try:
            self.http = GatewayHttpClient(
                base_url,
                api_key,
                attempts=attempts,
                retry_statuses=RETRY_STATUSES,
                backoff_s=backoff_s,
                max_backoff_s=max_backoff_s,
                max_retry_after_s=max_retry_after_s,
                give_up_above_cap=True,
                timeout_s=timeout_s,
                sleep=sleep,
                user_agent="ai-factory-eval",
            )
        except ValueError:
            raise TargetError(f"gateway URL {base_url!r} must be http(s)://HOST[:PORT]/v1") from None
        self.base_url = self.http.base_url
        self.api_key = api_key
        self.prompt = prompt
        self.render_locally = render_locally
        self.model_override = model_override
        self.attempts = attempts

    def post(self, path: str, payload: dict[str, Any]) -> tuple[HttpAnswer, float]:
        """POST with retries: the final answer (any status) and the latency of its attempt in ms.

        Raises ``GatewayConnectionError`` when every attempt failed to connect."""
        return self.http.post(path, payload)

    def request_body(self, suite: Suite, case: Case) -> dict[str, Any]:
        """The chat completion request for one case."""
        prompt = self.prompt
        body: dict[str, Any]
        if prompt is not None and not self.render_locally:
            ref: dict[str, Any] = {"name": prompt.name, "variables": dict(case.vars)}
            if prompt.version is not None:
                ref["version"] = prompt.version  # pinned: an alias moving mid-run changes nothing
            elif prompt.alias is not None:
                ref["alias"] = prompt.alias
            body = {"messages": [dict(m) for m in case.messages], "prompt": ref}
            model = self.model_override or suite.model
        else:
            body = {"messages": render_case(suite, case, prompt)}
            if prompt is not None:
                body.update(prompt.parameters)
            model = self.model_override or suite.model or (prompt.model if prompt else None)
        body.update(case.request)  # the suite's and the case's request options win over the prompt's
        if suite.retrieval is not None:
            body["retrieval"] = dict(suite.retrieval)
        if model:
            body["model"] = model
        return body

    def run(self, suite: Suite, case: Case) -> CaseOutput:
        """One chat completion; failures come back as ``CaseOutput.error``, never raised."""
        try:
            body = self.request_body(suite, case)
        except PromptVariablesError as exc:
            return CaseOutput("", 0.0, error=f"vars do not fit the prompt: {exc}")
        try:
            answer, latency_ms = self.post("/chat/completions", body)
        except GatewayConnectionError as exc:
            return CaseOutput("", 0.0, error=f"{exc} (after {self.attempts} attempts)")
        request_id = answer.headers.get("x-request-id")
        if answer.status != 200:
            error = _error_text(answer)
            if answer.status in RETRY_STATUSES:
                error += f" (after retries, up to {self.attempts} attempts)"
            return CaseOutput("", latency_ms, request_id=request_id, error=error)
        try:
            data = json.loads(answer.body)
            message = data["choices"][0]["message"]
            text = message.get("content") or ""
            if not text and message.get("tool_calls"):
                text = json.dumps(message["tool_calls"])
            usage = data.get("usage") or {}
            citations = [c for c in data.get("citations") or [] if isinstance(c, dict)]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return CaseOutput("", latency_ms, request_id=request_id, error=f"unreadable answer: {exc}")
        try:
            cost = float(answer.headers.get("x-aif-cost-usd", "0") or 0)
        except ValueError:
            cost = 0.0
        return CaseOutput(
            text=str(text),
            latency_ms=latency_ms,
            cost_usd=cost,
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            model_served=answer.headers.get("x-aif-served-by") or data.get("model"),
            request_id=request_id,
            citations=citations,
        )

    def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        """Embeddings through the same gateway (for ``similarity`` with ``method: embedding``)."""
        answer, _ = self.post("/embeddings", {"model": model, "input": texts})
        if answer.status != 200:
            raise RuntimeError(_error_text(answer))
        data = json.loads(answer.body)["data"]
        return [list(map(float, item["embedding"])) for item in sorted(data, key=lambda d: d["index"])]

    def close(self) -> None:
        """Close the HTTP connections."""
        self.http.close()


# --- the gateway in this process, offline ---------------------------------------------------------


class LocalTarget(GatewayTarget):
    """``LocalGatewayServer`` on 127.0.0.1:0 with its own key; every model alias answered by the offline
    model (``aif_gateway.offline_model``): a case's ``offline_answer``, then ``script``'s rules, then its
    JSON mode or echo."""

    name = "local"

    def __init__(
        self,
        *,
        prompt: ResolvedPrompt | None = None,
        state_dir: str | Path | None = None,
        catalog_path: str | None = None,
        script: Any = None,
        config: Any = None,
        **kwargs: Any,
    ) -> None:
        from ai_factory.local.server import LocalGatewayServer

        self._tmp = None if state_dir else tempfile.mkdtemp(prefix="aif-eval-")
        self.state_dir = Path(state_dir or self._tmp or "")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        config = config or offline_config(catalog_path)  # a ready config: `models evaluate` adds a route
        plaintext = create_local_key(
            self.state_dir,
            team="evals",
            feature="eval-harness",
            models=tuple(sorted(config.routes)),
            monthly_budget_usd=1_000_000.0,
            rate_limit_rpm=1_000_000,
            description="ai-factory eval --target local",
        )
        gateway, self.model = offline_gateway(self.state_dir, config, script)
        self._lock = threading.Lock()  # cases run concurrently; a knowledge base is registered once
        self._registered: set[tuple[str, Path]] = set()
        self.server = LocalGatewayServer(port=0, config=config, gateway=gateway).start()
        super().__init__(f"{self.server.url}/v1", plaintext, prompt=prompt, render_locally=True, **kwargs)

    def run(self, suite: Suite, case: Case) -> CaseOutput:
        """One case; its ``offline_answer`` (if any) answers exactly its own conversation."""
        if suite.retrieval is not None and suite.documents is not None:
            with self._lock:
                wanted = (suite.retrieval["knowledge_base"], suite.documents)
                if wanted not in self._registered:
                    self.register_knowledge_base(*wanted)
                    self._registered.add(wanted)
        if case.offline_answer is not None:
            from aif_gateway.offline_model import CannedAnswer, OfflineRule, conversation_sha256

            try:
                messages = self.request_body(suite, case)["messages"]
            except PromptVariablesError as exc:
                return CaseOutput("", 0.0, error=f"vars do not fit the prompt: {exc}")
            answer = CannedAnswer.parse(case.offline_answer)
            # Exactly this case's conversation; for a retrieval suite the offline model matches it with the
            # gateway's instruction and sources taken out again, so two cases whose questions contain one
            # another never get each other's answers.
            self.model.learn([OfflineRule(answer, messages_sha256=conversation_sha256(messages))])
        return super().run(suite, case)

    def register_knowledge_base(self, name: str, documents: Path) -> None:
        """Serve ``documents`` as knowledge base ``name`` to the harness's key (offline retriever)."""
        from ai_factory.local.server import knowledge_path
        from aif_gateway.offline_retriever import register_local

        register_local(knowledge_path(self.state_dir), name, documents, ["evals/eval-harness"], "restricted")

    def close(self) -> None:
        super().close()
        self.server.shutdown()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)


# --- Bedrock directly -----------------------------------------------------------------------------


class BedrockTarget:
    """Bedrock Converse with the messages rendered here; the model alias's first catalog target."""

    name = "bedrock"

    def __init__(
        self,
        *,
        prompt: ResolvedPrompt | None = None,
        client: Any = None,
        region: str | None = None,
        catalog_path: str | None = None,
        config: Any = None,
    ) -> None:
        from ai_factory.catalog.model_catalog import ModelCatalog

        self.prompt = prompt
        # ``config``: a ready gateway config (``ai-factory models evaluate`` adds a route to one model).
        self._config = config or ModelCatalog.load(catalog_path).gateway_config(region)
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client(
                "bedrock-runtime",
                region_name=region,
                config=Config(retries={"mode": "adaptive", "max_attempts": DEFAULT_ATTEMPTS}),
            )
        self._client = client

    def _target(self, alias: str) -> Any:
        route = self._config.routes.get(alias)
        if route is None or route.modality != "chat":
            raise TargetError(f"model {alias!r} is not a chat route in the model catalog")
        target = route.targets[0]
        if target.provider != "bedrock":
            raise TargetError(f"model {alias!r} is not served by Bedrock (use --target local or gateway)")
        return target

    def run(self, suite: Suite, case: Case) -> CaseOutput:
        """One Converse call; service errors come back as ``CaseOutput.error``."""
        from aif_gateway.metering import cost_usd
        from aif_gateway.provider_types import TokenUsage

        prompt = self.prompt
        alias = suite.model or (prompt.model if prompt else None)
        if not alias:
            return CaseOutput("", 0.0, error="no model: the suite names neither a prompt nor a model")
        try:
            target = self._target(alias)
            messages = render_case(suite, case, prompt)
        except (TargetError, PromptVariablesError) as exc:
            return CaseOutput("", 0.0, error=str(exc))
        request: dict[str, Any] = {
            "modelId": target.model_id,
            "messages": [
                {"role": m["role"], "content": [{"text": str(m["content"])}]}
                for m in messages
                if m["role"] != "system"
            ],
        }
        system = [{"text": str(m["content"])} for m in messages if m["role"] == "system"]
        if system:
            request["system"] = system
        params = prompt.parameters if prompt else {}
        inference = {
            name: params[key]
            for key, name in (
                ("max_tokens", "maxTokens"),
                ("temperature", "temperature"),
                ("top_p", "topP"),
                ("stop", "stopSequences"),
            )
            if key in params
        }
        if inference:
            request["inferenceConfig"] = inference
        started = time.perf_counter()
        try:
            response = self._client.converse(**request)
        except Exception as exc:  # botocore ClientError, throttling after botocore's retries, network
            return CaseOutput(
                "", (time.perf_counter() - started) * 1000, error=f"{type(exc).__name__}: {exc}"
            )
        latency_ms = (time.perf_counter() - started) * 1000
        usage = response.get("usage") or {}
        tokens = TokenUsage(
            input=int(usage.get("inputTokens") or 0),
            output=int(usage.get("outputTokens") or 0),
            cache_read=int(usage.get("cacheReadInputTokens") or 0),
            cache_write=int(usage.get("cacheWriteInputTokens") or 0),
        )
        content = response.get("output", {}).get("message", {}).get("content") or []
        text = "".join(str(block.get("text", "")) for block in content)
        return CaseOutput(
            text=text,
            latency_ms=latency_ms,
            cost_usd=cost_usd(tokens, target.prices),
            input_tokens=tokens.input + tokens.cache_read + tokens.cache_write,
            output_tokens=tokens.output,
            model_served=target.name,
            request_id=(response.get("ResponseMetadata") or {}).get("RequestId"),
        )

    def close(self) -> None:
        """Nothing to release (the boto3 client closes with the process)."""
