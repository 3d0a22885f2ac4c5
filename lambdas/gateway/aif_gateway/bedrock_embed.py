"""Titan text embeddings through Bedrock InvokeModel: one call per input, run concurrently.

Titan embeds one text per call, so a batch of N inputs is N calls. They run on a small thread pool
(``EMBED_CONCURRENCY`` at a time) and the whole batch must finish within one model timeout, the time the
router reserves for a target before the request deadline. When a call fails, calls not yet started are
skipped and the tokens of every call that did complete travel with the error (``ProviderError.usage``),
so the gateway meters them even though the request fails.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any

from .config import ModelTarget
from .openai_schema import EmbeddingsRequest
from .provider_types import EmbeddingResult, ProviderError, TokenUsage

EMBED_CONCURRENCY = 8


class TitanEmbedder:
    def __init__(self, timeout_s: float, concurrency: int = EMBED_CONCURRENCY) -> None:
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="aif-embed")
        return self._pool

    def embed(
        self, client: Any, target: ModelTarget, request: EmbeddingsRequest, call: Callable[[Any], Any]
    ) -> EmbeddingResult:
        """``call(fn)`` runs one SDK call and turns SDK errors into ``ProviderError``."""
        failed = threading.Event()

        def one(text: str) -> tuple[list[float], int] | None:
            if failed.is_set():
                return None  # the batch already failed: do not spend more
            body: dict[str, Any] = {"inputText": text, "normalize": True}
            if request.dimensions is not None:
                body["dimensions"] = request.dimensions
            try:
                response = call(
                    lambda: client.invoke_model(
                        modelId=target.model_id,
                        body=json.dumps(body),
                        contentType="application/json",
                        accept="application/json",
                    )
                )
            except BaseException:
                failed.set()
                raise
            payload = json.loads(response["body"].read())
            return payload["embedding"], int(payload.get("inputTextTokenCount", 0))

        if len(request.inputs) == 1:  # no thread hop for the common single input
            futures: list[Future[tuple[list[float], int] | None]] = [_done(one, request.inputs[0])]
        else:
            futures = [self.pool().submit(one, text) for text in request.inputs]
        done, pending = wait(futures, timeout=self.timeout_s, return_when=FIRST_EXCEPTION)
        if any(f.exception() for f in done):
            failed.set()
            done, pending = wait(futures, timeout=self.timeout_s)  # let in-flight calls finish (billed)
        for f in pending:
            f.cancel()
        tokens = sum(r[1] for f in done if not f.exception() and (r := f.result()) is not None)
        for f in futures:
            if f in done and (exc := f.exception()) is not None:
                if isinstance(exc, ProviderError):
                    exc.usage = TokenUsage(input=tokens)
                    raise exc
                raise exc
        if pending:
            failed.set()
            raise ProviderError(
                "Timeout",
                f"{len(pending)} of {len(futures)} embedding calls did not finish in {self.timeout_s:g} s",
                retryable=True,
                usage=TokenUsage(input=tokens),
            )
        results = [f.result() for f in futures]
        return EmbeddingResult(vectors=[r[0] for r in results if r is not None], input_tokens=tokens)


def _done(fn: Callable[[str], Any], text: str) -> Future[Any]:
    future: Future[Any] = Future()
    try:
        future.set_result(fn(text))
    except BaseException as exc:  # kept on the future, raised by the caller like a pooled call's
        future.set_exception(exc)
    return future
