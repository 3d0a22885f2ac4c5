"""Keys, model permissions, budgets and rate limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.stub import ANY
from conftest import HAIKU, Harness, converse_response, set_now


def test_missing_unknown_revoked_and_expired_keys_are_401(harness: Harness) -> None:
    revoked = harness.add_key(revoked_at=harness.now - timedelta(minutes=1))
    expired = harness.add_key(expires_at=harness.now - timedelta(seconds=1))

    status, _, body = harness.call("GET", "/v1/models")
    assert status == 401 and body["error"]["code"] == "missing_api_key"
    status, _, body = harness.call("GET", "/v1/models", key="aif-nope-nope")
    assert status == 401 and body["error"]["message"] == "Unknown API key."
    status, _, body = harness.call("GET", "/v1/models", key=revoked)
    assert status == 401 and body["error"]["code"] == "revoked_api_key"
    status, _, body = harness.call("GET", "/v1/models", key=expired)
    assert status == 401 and body["error"]["code"] == "expired_api_key"
    assert "expired at" in body["error"]["message"]


def test_wrong_authorization_scheme_is_401(harness: Harness) -> None:
    key = harness.add_key()
    event_headers = {"authorization": f"Basic {key}"}
    from conftest import make_event

    response = harness.gateway.handle(make_event("GET", "/v1/models", None, event_headers))
    assert response["statusCode"] == 401


def test_revocation_takes_effect_within_the_key_cache_ttl(harness: Harness) -> None:
    key = harness.add_key()
    assert harness.call("GET", "/v1/models", key=key)[0] == 200
    record = next(iter(harness.keys.list()))
    harness.keys.revoke(record.key_id, harness.now - timedelta(seconds=1))
    assert harness.call("GET", "/v1/models", key=key)[0] == 200  # still fresh in the cache
    harness.clock.advance(harness.gateway.config.key_cache_ttl_s)
    # Stale: this request is decided on the cached record while the refresh runs beside it...
    assert harness.call("GET", "/v1/models", key=key)[0] == 200
    # ...and the next one sees the revocation.
    assert harness.call("GET", "/v1/models", key=key)[0] == 401


def test_an_idle_environment_rereads_a_key_before_trusting_it(harness: Harness) -> None:
    key = harness.add_key()
    assert harness.call("GET", "/v1/models", key=key)[0] == 200
    record = next(iter(harness.keys.list()))
    harness.keys.revoke(record.key_id, harness.now - timedelta(seconds=1))
    harness.clock.advance(harness.gateway.config.key_cache_ttl_s * 2)  # beyond the stale window
    assert harness.call("GET", "/v1/models", key=key)[0] == 401


def test_stale_entries_are_refreshed_off_the_request_path(harness: Harness) -> None:
    """With a real background thread the stale request does not wait for the store."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from aif_gateway.access import BackgroundRefresher, KeyAuthenticator

    release = threading.Event()
    reads: list[str] = []

    class SlowStore:
        def get_by_hash(self, key_hash: str) -> Any:
            reads.append(key_hash)
            if len(reads) > 1:
                release.wait(5)  # the refresh blocks until the test lets it go
            return harness.keys.get_by_hash(key_hash)

    key = harness.add_key()
    executor = ThreadPoolExecutor(max_workers=1)
    auth = KeyAuthenticator(SlowStore(), 30.0, harness.clock, BackgroundRefresher(executor))  # type: ignore[arg-type]
    auth.authenticate(f"Bearer {key}", harness.now)
    harness.clock.advance(31)
    auth.authenticate(f"Bearer {key}", harness.now)  # returns while the refresh is still blocked
    auth.authenticate(f"Bearer {key}", harness.now)  # one refresh in flight per key, not two
    release.set()
    executor.shutdown(wait=True)
    assert len(reads) == 2


def test_key_lookups_are_cached(harness: Harness) -> None:
    key = harness.add_key()
    for _ in range(5):
        harness.call("GET", "/v1/models", key=key)
    assert harness.keys.reads == 1


def test_models_lists_only_what_the_key_may_use(harness: Harness) -> None:
    key = harness.add_key(allowed_models=("echo", "embed", "not-in-catalog"))
    status, _, body = harness.call("GET", "/v1/models", key=key)
    assert status == 200
    assert [m["id"] for m in body["data"]] == ["echo", "embed"]
    assert harness.call("GET", "/v1/models/echo", key=key)[0] == 200
    assert harness.call("GET", "/v1/models/chat-fast", key=key)[0] == 403


def test_model_not_allowed_is_403_and_unknown_is_404(harness: Harness) -> None:
    key = harness.add_key(allowed_models=("echo",))
    status, _, body = harness.chat(key, model="chat-fast")
    assert status == 403
    assert body["error"]["param"] == "model"
    assert (
        "may not use 'chat-fast'" in body["error"]["message"] and "allowed: echo" in body["error"]["message"]
    )
    status, _, body = harness.chat(key, model="gpt-9")
    assert status == 404 and body["error"]["code"] == "model_not_found"


def test_budget_exhaustion_is_429_naming_budget_and_reset(harness: Harness) -> None:
    # 1M input tokens at $1/M = $1 a call; budget $1.50: the first call passes, the second spends it,
    # the third is refused.
    key = harness.add_key(monthly_budget_usd=1.5)
    usage = {"inputTokens": 1_000_000, "outputTokens": 0, "totalTokens": 1_000_000}
    for _ in range(2):
        harness.stubber.add_response(
            "converse",
            converse_response(usage=usage),
            {"modelId": HAIKU.model_id, "messages": ANY, "guardrailConfig": ANY, "requestMetadata": ANY},
        )
        assert harness.chat(key)[0] == 200

    status, headers, body = harness.chat(key)

    assert status == 429
    assert body["error"]["code"] == "budget_exhausted"
    message = body["error"]["message"]
    assert "$1.50" in message and "support/summarizer" in message and "2026-12-01" in message
    assert int(headers["Retry-After"]) > 0
    harness.stubber.assert_no_pending_responses()
    assert harness.audit[-1].status == 429 and harness.audit[-1].error_type == "budget_exhausted"


def test_budget_resets_in_a_new_month(harness: Harness) -> None:
    key = harness.add_key(monthly_budget_usd=0.5)
    usage = {"inputTokens": 1_000_000, "outputTokens": 0, "totalTokens": 1_000_000}
    harness.stubber.add_response("converse", converse_response(usage=usage))
    assert harness.chat(key)[0] == 200
    assert harness.chat(key)[0] == 429
    set_now(harness, datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC))
    harness.stubber.add_response("converse", converse_response())
    assert harness.chat(key)[0] == 200


def test_budget_sees_spend_recorded_by_other_instances_after_the_snapshot_ttl(harness: Harness) -> None:
    key = harness.add_key(monthly_budget_usd=1.0)
    assert harness.chat(key, model="echo")[0] == 200
    # Another instance spends the budget: this one sees it at its next snapshot.
    from aif_gateway.records import UsageRecord

    harness.ledger.record(
        UsageRecord("other-1", harness.now, "support", "summarizer", "k", "echo", 200, cost_usd=2.0)
    )
    assert harness.chat(key, model="echo")[0] == 200
    harness.clock.advance(harness.gateway.config.usage_snapshot_ttl_s)
    assert harness.chat(key, model="echo")[0] == 200  # decided on the stale snapshot, refreshed beside it
    assert harness.chat(key, model="echo")[0] == 429


def test_hot_path_reads_nothing_once_warm(harness: Harness) -> None:
    """After the first request, key and usage reads happen only on refreshes, not per request."""
    key = harness.add_key()
    for _ in range(20):
        assert harness.chat(key, model="echo")[0] == 200
    assert harness.keys.reads == 1
    assert harness.ledger.snapshots == 1


def test_rate_limit_is_429_with_retry_after(harness: Harness) -> None:
    key = harness.add_key(rate_limit_rpm=2)
    assert harness.chat(key, model="echo")[0] == 200
    assert harness.chat(key, model="echo")[0] == 200
    status, headers, body = harness.chat(key, model="echo")
    assert status == 429 and body["error"]["code"] == "rate_limit_exceeded"
    assert "2 requests per minute" in body["error"]["message"]
    assert headers["Retry-After"] == "30"  # harness clock is at :30 past the minute
    set_now(harness, harness.now + timedelta(minutes=1))
    assert harness.chat(key, model="echo")[0] == 200


def test_rejections_are_audited_but_not_written_to_the_ledger(harness: Harness) -> None:
    key = harness.add_key(allowed_models=("echo",))
    harness.chat(key, model="chat-fast")
    assert harness.ledger.records == {}
    assert harness.audit[-1].status == 403 and harness.audit[-1].key_id


def test_usage_refresh_keeps_what_was_recorded_during_the_read(harness: Harness) -> None:
    """A request recorded while the snapshot read is under way may be missing from the snapshot: it
    stays in this instance's own count (over-counting at worst, never under-counting)."""
    from aif_gateway.access import UsageGuard
    from aif_gateway.memory_store import MemoryLedger

    ledger = MemoryLedger()
    guard = UsageGuard(ledger, 5.0, harness.clock)
    now = harness.now
    guard.add("t", "f", now, 1.0)  # nothing cached yet: ignored, the snapshot will include it
    guard._refresh(("t", "f"), now)
    guard.add("t", "f", now, 2.0)  # recorded before the next read starts: in the next snapshot

    real_snapshot = ledger.snapshot

    def snapshot_while_another_request_lands(*args: Any) -> Any:
        result = real_snapshot(*args)
        guard.add("t", "f", now, 4.0)  # lands after the read: not in `result`
        return result

    ledger.snapshot = snapshot_while_another_request_lands  # type: ignore[method-assign]
    entry = guard._refresh(("t", "f"), now)
    assert entry.extra_cost == 4.0
    assert entry.extra_requests == {"2026-11-25T12:00": 1}
