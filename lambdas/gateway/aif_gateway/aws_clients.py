"""boto3 clients for the model providers: created on first use (so importing costs nothing and local
mode needs no credentials until an AWS-backed route is called), one per key, shared by all threads."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)


def default_region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def make_client(service: str, region: str | None, *, read_timeout: float, max_attempts: int) -> Any:
    """A boto3 client with a bounded read timeout and ``max_attempts`` tries in all (1: no SDK retry)."""
    import boto3
    from botocore.config import Config

    config = Config(
        read_timeout=read_timeout,
        connect_timeout=5,
        retries={"max_attempts": max_attempts, "mode": "standard"},
    )
    create: Any = boto3.client  # one call for every service (the stubs type each service literally)
    return create(service, region_name=region or default_region(), config=config)


class LazyClients(Generic[K]):
    def __init__(self, create: Callable[[K], Any]) -> None:
        self._create = create
        self._clients: dict[K, Any] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> Any:
        client = self._clients.get(key)
        if client is None:
            with self._lock:
                client = self._clients.get(key)
                if client is None:
                    client = self._clients[key] = self._create(key)
        return client
