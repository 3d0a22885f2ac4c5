"""The usage writer: records are written after the response, in order, bounded, and never lost.

The gateway with a writer answers before its record's ledger write (the request's one synchronous write
is its reservation); the audit line is out before the answer; ``drain`` (SIGTERM in the deployed server)
writes the backlog or logs it in full.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import make_config, make_event, put_key

from aif_gateway import lambda_server
from aif_gateway.app import Gateway
from aif_gateway.memory_store import MemoryKeyStore, MemoryLedger
from aif_gateway.records import UsageRecord
from aif_gateway.usage_writer import THREAD_NAME, UsageWriter

NOW = datetime(2026, 11, 25, 12, 0, 30, tzinfo=UTC)


def usage(request_id: str) -> UsageRecord:
    return UsageRecord(
        request_id=request_id, timestamp=NOW, team="t", feature="f", key_id="k", route="echo", status=200
    )


class GatedLedger(MemoryLedger):
    """A ledger whose writes wait until ``open`` is set; records which thread wrote."""

    def __init__(self) -> None:
        super().__init__()
        self.open = threading.Event()
        self.threads: list[str] = []

    def record(self, usage: UsageRecord) -> None:
        assert self.open.wait(10)
        self.threads.append(threading.current_thread().name)
        super().record(usage)


def test_records_are_written_on_the_writer_thread_in_order() -> None:
    written: list[str] = []
    writer = UsageWriter(lambda r: written.append(r.request_id))
    for i in range(20):
        writer.submit(usage(f"r{i}"))
    assert writer.drain(5.0) == 0
    assert written == [f"r{i}" for i in range(20)] and writer.pending() == 0


def test_a_full_backlog_makes_the_request_write_its_own_record() -> None:
    gate, written = threading.Event(), []

    def slow(record: UsageRecord) -> None:
        if threading.current_thread().name == THREAD_NAME:
            assert gate.wait(10)
        written.append(record.request_id)

    writer = UsageWriter(slow, max_pending=2)
    writer.submit(usage("a"))
    writer.submit(usage("b"))
    writer.submit(usage("c"))  # backlog full: written here, before submit returns
    assert written == ["c"] and writer.written_inline == 1
    gate.set()
    assert writer.drain(5.0) == 0
    assert sorted(written) == ["a", "b", "c"]


def test_drain_that_times_out_logs_what_is_left_in_full(caplog: pytest.LogCaptureFixture) -> None:
    gate = threading.Event()
    writer = UsageWriter(lambda r: gate.wait(10), max_pending=10)
    for i in range(3):
        writer.submit(usage(f"r{i}"))
    with caplog.at_level(logging.CRITICAL, logger="aif_gateway"):
        left = writer.drain(0.05)
    gate.set()
    assert left == 3  # one being written (its audit line is out already), two never started
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    restored = [UsageRecord.from_dict(json.loads(x.removeprefix("UNPERSISTED_USAGE_RECORD "))) for x in lines]
    assert [r.request_id for r in restored] == ["r1", "r2"]


def test_a_failing_persist_is_logged_and_the_writer_keeps_going(caplog: pytest.LogCaptureFixture) -> None:
    written: list[str] = []

    def persist(record: UsageRecord) -> None:
        if record.request_id == "bad":
            raise RuntimeError("bug")
        written.append(record.request_id)

    writer = UsageWriter(persist)
    with caplog.at_level(logging.CRITICAL, logger="aif_gateway"):
        for rid in ("a", "bad", "b"):
            writer.submit(usage(rid))
        assert writer.drain(5.0) == 0
    assert written == ["a", "b"]
    assert any(r.getMessage().startswith("UNPERSISTED_USAGE_RECORD") for r in caplog.records)


def _gateway(ledger: MemoryLedger, audit: list[UsageRecord]) -> tuple[Gateway, str]:
    keys = MemoryKeyStore()
    key = put_key(keys, allowed_models=("echo",))
    gateway = Gateway(
        make_config(), keys, ledger, audit_log=audit.append, now=lambda: NOW, usage_writer=UsageWriter()
    )
    return gateway, key


def _chat(gateway: Gateway, key: str) -> dict[str, Any]:
    body = json.dumps({"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
    response = gateway.handle(
        make_event("POST", "/v1/chat/completions", body, {"Authorization": f"Bearer {key}"})
    )
    assert isinstance(response, dict)
    return response


def test_the_gateway_answers_before_the_ledger_write_and_the_audit_line_is_out_first() -> None:
    ledger, audit = GatedLedger(), []
    gateway, key = _gateway(ledger, audit)
    response = _chat(gateway, key)  # returns while the ledger write is still held
    assert response["statusCode"] == 200
    request_id = response["headers"]["x-request-id"]
    assert ledger.records == {} and [a.request_id for a in audit] == [request_id]
    ledger.open.set()
    assert gateway.drain(5.0) == 0
    assert list(ledger.records) == [request_id] and ledger.threads == [THREAD_NAME]


def test_sigterm_drains_the_server_gateway_then_exits() -> None:
    ledger, audit = MemoryLedger(), []
    gateway, key = _gateway(ledger, audit)

    class Server:
        pass

    server: Any = Server()
    server.gateway = gateway
    previous = signal.getsignal(signal.SIGTERM)
    try:
        lambda_server.drain_on_sigterm(server)
        _chat(gateway, key)
        with pytest.raises(SystemExit):
            os.kill(os.getpid(), signal.SIGTERM)
            threading.Event().wait(1)  # the handler runs on the main thread between bytecodes
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert len(ledger.records) == 1 and gateway.usage_writer is not None
    assert gateway.usage_writer.pending() == 0


def test_in_steady_state_the_request_waits_for_one_aws_call_its_reservation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The deployed store set-up on moto: after the first request (which reads the key and the usage
    snapshot), each request's only call on its own thread is the reservation ``UpdateItem``; the record's
    ``PutItem`` and the settlement run on background threads."""
    import boto3
    from moto import mock_aws

    from aif_gateway.dynamo_quota import DynamoQuotaStore
    from aif_gateway.dynamo_store import DynamoKeyStore, DynamoLedger, create_tables, make_client

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = make_client()
        create_tables(client, keys_table="keys", usage_table="usage")
        calls: list[tuple[str, str]] = []
        client.meta.events.register(
            "before-call.dynamodb",
            lambda model, **_: calls.append((model.name, threading.current_thread().name)),
        )
        keys = DynamoKeyStore("keys", client)
        key = put_key(keys, allowed_models=("echo",))
        ledger = DynamoLedger("usage", client)
        gateway = Gateway(
            make_config(),
            keys,
            ledger,
            quota=DynamoQuotaStore("usage", client),
            now=lambda: NOW,
            usage_writer=UsageWriter(),
        )
        first = len(calls)
        assert _chat(gateway, key)["statusCode"] == 200
        me = threading.current_thread().name
        assert sorted(op for op, thread in calls[first:] if thread == me) == [
            "BatchGetItem",
            "GetItem",
            "UpdateItem",
        ]
        for _ in range(5):
            gateway.drain(5.0)
            before = len(calls)
            assert _chat(gateway, key)["statusCode"] == 200
            assert [op for op, thread in calls[before:] if thread == me] == ["UpdateItem"]
        assert gateway.drain(5.0) == 0
        records = boto3.client("dynamodb").scan(TableName="usage")["Items"]
        assert sum(1 for item in records if item["pk"]["S"].startswith("LEDGER#")) == 6
        writer_ops = {op for op, thread in calls if thread == THREAD_NAME}
        assert writer_ops == {"PutItem"}
