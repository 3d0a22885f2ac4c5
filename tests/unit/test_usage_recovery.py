"""Usage recovery: records whose write-behind died with the environment reach the ledger once.

End to end under moto (CloudWatch Logs, DynamoDB, SQS): a gateway whose usage writer is killed before it
flushes (the records are in its audit lines, none in the table), the recovery over the audit lines, the
spill replay Lambda, and the gateway's real ledger and gates.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from conftest import InlineExecutor, make_config, make_event, put_key
from moto import mock_aws

from aif_gateway import contract, handler, spill_replay, usage_recovery
from aif_gateway.app import Gateway
from aif_gateway.dynamo_quota import DynamoQuotaStore
from aif_gateway.dynamo_store import DynamoKeyStore, DynamoLedger, create_tables, usage_from_item
from aif_gateway.records import UsageRecord
from aif_gateway.spill import SpillQueue
from aif_gateway.usage_recovery import FILTER_PATTERN, UsageRecovery, ledger_record, window
from aif_gateway.usage_writer import UsageWriter

KEYS, USAGE, LOG_GROUP, STREAM = "aif-keys", "aif-usage", "/aws/lambda/aif-gateway", "2026/11/25/[$LATEST]x"
NOW = datetime(2026, 11, 25, 12, 0, 30, tzinfo=UTC)


class KilledWriter(UsageWriter):
    """A writer whose environment died before its thread ran: records are handed over, never written."""

    def _start(self) -> None:
        pass


class DeadExecutor(Executor):
    """Background work (the gate settlement's flush) that never runs: the environment died first."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return Future()


class World:
    """The AWS side (moto) and a gateway that logs its audit lines to the log group as Lambda would."""

    def __init__(self) -> None:
        self.ddb = boto3.client("dynamodb")
        self.sqs = boto3.client("sqs")
        self.logs = boto3.client("logs")
        create_tables(self.ddb, keys_table=KEYS, usage_table=USAGE)
        self.queue_url = self.sqs.create_queue(QueueName="aif-usage-spill")["QueueUrl"]
        self.logs.create_log_group(logGroupName=LOG_GROUP)
        self.logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=STREAM)
        self.keys = DynamoKeyStore(KEYS, self.ddb)
        self.ledger = DynamoLedger(USAGE, self.ddb)
        self.quota = DynamoQuotaStore(USAGE, self.ddb)
        self.key = put_key(self.keys, allowed_models=("echo",), team="support", feature="writer")
        self.recovery = UsageRecovery(self.logs, LOG_GROUP, DynamoLedger(USAGE), SpillQueue(self.queue_url))

    def gateway(self, writer: UsageWriter, executor: Executor | None = None) -> Gateway:
        return Gateway(
            make_config(),
            self.keys,
            self.ledger,
            spill=SpillQueue(self.queue_url),
            audit_log=self.audit_line,
            now=lambda: NOW,
            refresh_executor=executor or InlineExecutor(),
            quota=self.quota,
            usage_writer=writer,
        )

    def audit_line(self, record: UsageRecord, ledger: bool = False) -> None:
        """``handler.audit_log``'s real line (Powertools JSON), put in the log group."""
        out = io.StringIO()
        stream: Any = handler.logger.registered_handler
        saved, stream.stream = stream.stream, out
        try:
            handler.audit_log(record, ledger=ledger)
        finally:
            stream.stream = saved
        line = out.getvalue().strip().splitlines()[-1]
        self.logs.put_log_events(
            logGroupName=LOG_GROUP,
            logStreamName=STREAM,
            logEvents=[{"timestamp": int(time.time() * 1000), "message": line}],
        )

    def chat(self, gateway: Gateway, model: str = "echo", text: str = "hello there") -> dict[str, Any]:
        body = json.dumps({"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 50})
        response = gateway.handle(
            make_event("POST", "/v1/chat/completions", body, {"Authorization": f"Bearer {self.key}"})
        )
        assert isinstance(response, dict)
        return response

    def recover(self) -> usage_recovery.RecoveryResult:
        now = datetime.now(UTC)
        return self.recovery.run(now - timedelta(minutes=10), now + timedelta(minutes=1))

    def replay(self) -> None:
        """The spill replay Lambda, given what is in the spill queue (as its SQS event source would)."""
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not messages:
                return
            event = {"Records": [{"messageId": m["MessageId"], "body": m["Body"]} for m in messages]}
            assert spill_replay.handler(event) == {"batchItemFailures": []}
            for m in messages:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])

    def ledger_items(self) -> list[UsageRecord]:
        items = self.ddb.scan(TableName=USAGE)["Items"]
        return [usage_from_item(i) for i in items if i["pk"]["S"].startswith("LEDGER#")]

    def gate(self) -> Any:
        return self.quota.state("support", "writer", NOW.strftime("%Y-%m"))


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        contract.USAGE_TABLE_ENV: USAGE,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_REGION", raising=False)
    spill_replay._ledger.cache_clear()
    with mock_aws():
        yield World()
    spill_replay._ledger.cache_clear()


def test_records_a_killed_writer_held_reach_the_ledger_exactly_once_and_sums_converge(world: World) -> None:
    gateway = world.gateway(KilledWriter())
    answered = [world.chat(gateway, text="a" * (40 * i)) for i in range(1, 4)]
    assert all(r["statusCode"] == 200 for r in answered)
    refused = world.chat(gateway, model="not-a-model")  # refused before any model: audited, not ledgered
    assert refused["statusCode"] in (400, 403, 404)
    gateway.gate.flush()  # the settlements landed; the writer's records did not
    assert world.ledger_items() == []
    assert gateway.usage_writer is not None and gateway.usage_writer.pending() == 3
    del gateway  # the environment is gone, with the writer's three records

    result = world.recover()
    assert (result.audited, result.already_recorded, result.redelivered) == (3, 0, 3)
    world.replay()

    ids = sorted(r["headers"]["x-request-id"] for r in answered)
    items = world.ledger_items()
    assert sorted(i.request_id for i in items) == ids  # each once; the refused request is not there
    gate = world.gate()
    spent = sum(Decimal(str(i.cost_usd)) for i in items)
    assert spent > 0 and Decimal(str(gate.spent_usd)) == spent
    assert gate.settled_requests == 3 and abs(gate.committed_usd - gate.spent_usd) < 1e-9
    assert gate.in_flight == 0

    # The next run's window overlaps this one: it finds them written and re-delivers nothing.
    again = world.recover()
    assert (again.audited, again.already_recorded, again.redelivered) == (3, 3, 0)
    world.replay()
    assert sorted(i.request_id for i in world.ledger_items()) == ids
    assert world.gate() == gate


def test_when_the_settlement_died_too_the_gate_keeps_the_reservation(world: World) -> None:
    """The limit of what the recovery restores: the ledger gets the record, but the gate, which never
    learnt the real cost, keeps the worst case it reserved (the budget over-counts, never under)."""
    gateway = world.gateway(KilledWriter(), executor=DeadExecutor())
    response = world.chat(gateway)
    assert response["statusCode"] == 200
    reserved = world.gate()
    del gateway

    assert world.recover().redelivered == 1
    world.replay()
    [item] = world.ledger_items()
    gate = world.gate()
    assert gate == reserved  # neither the recovery nor the replay touches the gate
    assert gate.committed_usd >= item.cost_usd > 0 and gate.in_flight == 1
    assert gate.spent_usd == 0 and gate.settled_requests == 0  # what docs/gateway.md says is not restored


def test_a_record_the_writer_wrote_is_not_redelivered_or_counted_twice(world: World) -> None:
    gateway = world.gateway(UsageWriter())
    response = world.chat(gateway)
    assert gateway.drain(5.0) == 0
    [written] = world.ledger_items()
    gate = world.gate()

    result = world.recover()
    assert (result.audited, result.already_recorded, result.redelivered) == (1, 1, 0)
    world.replay()
    assert world.ledger_items() == [written] and written.request_id == response["headers"]["x-request-id"]
    assert world.gate() == gate


def test_a_record_delivered_by_both_paths_is_stored_once(world: World) -> None:
    """The recovery re-delivers while a frozen writer still holds the record; the writer thaws and
    writes too, and the same message arrives twice: one item, the gate untouched by the replays."""
    writer = KilledWriter()
    gateway = world.gateway(writer)
    world.chat(gateway)
    gateway.gate.flush()
    gate = world.gate()
    assert world.recover().redelivered == 1
    body = world.sqs.receive_message(QueueUrl=world.queue_url)["Messages"][0]["Body"]
    twice = {"Records": [{"messageId": "m1", "body": body}, {"messageId": "m2", "body": body}]}
    assert spill_replay.handler(twice) == {"batchItemFailures": []}
    UsageWriter._start(writer)  # the environment thaws: its writer writes the same record
    assert writer.drain(5.0) == 0
    [item] = world.ledger_items()
    assert item == UsageRecord.from_dict(json.loads(body))
    assert world.gate() == gate


def test_a_failing_spill_fails_the_run_so_it_is_retried(world: World) -> None:
    gateway = world.gateway(KilledWriter())
    world.chat(gateway)
    world.recovery.spill = SpillQueue(world.queue_url.rsplit("/", 1)[0] + "/no-such-queue")
    with pytest.raises(Exception, match="spilling usage"):
        world.recover()
    world.recovery.spill = SpillQueue(world.queue_url)
    assert world.recover().redelivered == 1  # the retry


def test_the_lambda_handler_checks_the_window_before_its_schedule(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = world.gateway(KilledWriter())
    world.chat(gateway)
    monkeypatch.setenv(contract.GATEWAY_LOG_GROUP_ENV, LOG_GROUP)
    monkeypatch.setenv(contract.SPILL_QUEUE_URL_ENV, world.queue_url)
    monkeypatch.setenv(contract.RECOVERY_LAG_S_ENV, "0")
    fired = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    assert usage_recovery.handler({"time": fired})["redelivered"] == 1
    # With the default lag the line is too young for the run fired now: left to the write-behind.
    monkeypatch.delenv(contract.RECOVERY_LAG_S_ENV)
    assert usage_recovery.handler({"time": datetime.now(UTC).isoformat()})["audited"] == 0


def test_window_from_the_schedule_or_an_operators_range() -> None:
    start, end = window({"time": "2026-11-25T12:10:00Z"}, lag_s=300, window_s=600)
    assert (start, end) == (
        datetime(2026, 11, 25, 11, 55, tzinfo=UTC),
        datetime(2026, 11, 25, 12, 5, tzinfo=UTC),
    )
    explicit = {"start": "2026-11-24T00:00:00+00:00", "end": "2026-11-25T00:00:00+00:00"}
    assert window(explicit, 300, 600) == (
        datetime(2026, 11, 24, tzinfo=UTC),
        datetime(2026, 11, 25, tzinfo=UTC),
    )
    with pytest.raises(ValueError, match="'start' and 'end'"):
        window({"start": "2026-11-24T00:00:00Z"}, 300, 600)
    with pytest.raises(ValueError, match="must be before"):
        window({"start": explicit["end"], "end": explicit["start"]}, 300, 600)
    with pytest.raises(ValueError, match="'time'"):
        window({}, 300, 600)


def test_only_ledger_bound_audit_lines_are_records() -> None:
    record = UsageRecord(
        request_id="r1", timestamp=NOW, team="t", feature="f", key_id="k", route="echo", status=200
    )
    line = {"message": "audit", "audit": record.to_dict(), "ledger": True}
    assert ledger_record(json.dumps(line)) == record
    assert ledger_record(json.dumps({**line, "ledger": False})) is None
    assert ledger_record(json.dumps({**line, "message": "other"})) is None
    assert ledger_record("START RequestId: 1 Version: $LATEST") is None
    with pytest.raises(ValueError, match="readable usage record"):
        ledger_record(json.dumps({**line, "audit": {"request_id": "r1"}}))
    # What CloudWatch Logs is asked for: the same two conditions, server-side.
    assert FILTER_PATTERN == '{ ($.message = "audit") && ($.ledger IS TRUE) }'


def test_recorded_looks_up_more_records_than_one_batch_holds(world: World) -> None:
    records = [
        UsageRecord(
            request_id=f"r{i:03d}",
            timestamp=NOW + timedelta(seconds=i),
            team="support",
            feature="writer",
            key_id="k",
            route="echo",
            status=200,
        )
        for i in range(250)
    ]
    written = {r.request_id for r in records[::3]}
    for record in records[::3]:
        world.ledger.record(record)
    assert world.ledger.recorded(records) == written  # three BatchGetItem calls of at most 100 keys
    assert world.ledger.recorded([]) == set()


def test_the_deployed_audit_sink_is_told_which_records_go_to_the_ledger() -> None:
    """``handler.audit_log`` takes the ``ledger`` flag; a one-argument sink (``list.append``) still works."""
    from aif_gateway.memory_store import MemoryKeyStore, MemoryLedger

    deployed = Gateway(make_config(), MemoryKeyStore(), MemoryLedger(), audit_log=handler.audit_log)
    assert deployed._audit_takes_ledger
    seen: list[UsageRecord] = []
    plain = Gateway(make_config(), MemoryKeyStore(), MemoryLedger(), audit_log=seen.append)
    assert not plain._audit_takes_ledger
    record = UsageRecord(
        request_id="r1", timestamp=NOW, team="t", feature="f", key_id="k", route="echo", status=200
    )
    plain._audit(record, ledger=True)
    assert seen == [record]
