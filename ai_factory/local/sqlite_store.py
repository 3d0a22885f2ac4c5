"""SQLite key store and usage ledger for local mode (``ai-factory serve``, ``ai-factory keys``).

They implement ``aif_gateway.records.KeyStore`` and ``Ledger`` with the semantics of the DynamoDB
stores: keys are stored only as hashes; ``Ledger.record`` writes the usage record and adds it to the
feature's month and minute counters in one transaction, idempotently on ``request_id``; ``snapshot``
reads month-to-date spend and this minute's request count.

One file (``local.db`` in ``$AI_FACTORY_HOME`` or ``~/.ai-factory``) holds both. The database runs in
WAL mode so the CLI can create or revoke keys while a server is running. Each store keeps a single
connection guarded by a lock: SQLite serialises writers anyway, and one shared connection is cheaper
than opening one per request thread of the HTTP server.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ai_factory.state import default_state_dir
from aif_gateway.quota import Carry, Claim, GateState, Limits, admitted, applied
from aif_gateway.records import (
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_TOKENS_PER_MINUTE,
    ApiKeyRecord,
    FeedbackRecord,
    LedgerWriteError,
    UnknownKeyError,
    UsageRecord,
    UsageSnapshot,
    minute_of,
    month_of,
)

DB_FILE_NAME = "local.db"
# Minute counters only matter for the current minute; like the DynamoDB TTL, rows older than this go.
MINUTE_COUNTER_RETENTION = timedelta(hours=1)
_PRUNE_EVERY = 256  # records between clean-ups of expired minute counters

_SCHEMA = """
CREATE TABLE IF NOT EXISTS quota_gates (
    team TEXT NOT NULL,
    feature TEXT NOT NULL,
    month TEXT NOT NULL,
    committed_usd REAL NOT NULL,
    spent_usd REAL NOT NULL,
    minute TEXT NOT NULL,
    minute_requests INTEGER NOT NULL,
    minute_tokens INTEGER NOT NULL,
    in_flight INTEGER NOT NULL,
    settled_requests INTEGER NOT NULL,
    admitted_at REAL NOT NULL,
    PRIMARY KEY (team, feature, month)
);
CREATE TABLE IF NOT EXISTS api_keys (
    key_hash TEXT PRIMARY KEY,
    key_id TEXT NOT NULL UNIQUE,
    team TEXT NOT NULL,
    feature TEXT NOT NULL,
    allowed_models TEXT NOT NULL,
    monthly_budget_usd REAL NOT NULL,
    rate_limit_rpm INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT,
    description TEXT NOT NULL DEFAULT '',
    clearance TEXT,
    tokens_per_minute INTEGER NOT NULL DEFAULT 2000000,
    max_concurrency INTEGER NOT NULL DEFAULT 32
);
CREATE INDEX IF NOT EXISTS api_keys_by_team ON api_keys (team);
CREATE TABLE IF NOT EXISTS usage_records (
    request_id TEXT PRIMARY KEY,
    timestamp TEXT NOT NULL,
    month TEXT NOT NULL,
    team TEXT NOT NULL,
    feature TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_by_month_team ON usage_records (month, team, feature, timestamp);
CREATE TABLE IF NOT EXISTS month_counters (
    team TEXT NOT NULL,
    feature TEXT NOT NULL,
    month TEXT NOT NULL,
    cost_usd REAL NOT NULL DEFAULT 0,
    requests INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (team, feature, month)
);
CREATE TABLE IF NOT EXISTS feedback (
    request_id TEXT PRIMARY KEY,
    month TEXT NOT NULL,
    team TEXT NOT NULL,
    feature TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_by_month_team ON feedback (month, team, feature);
CREATE TABLE IF NOT EXISTS minute_counters (
    team TEXT NOT NULL,
    feature TEXT NOT NULL,
    minute TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    ttl INTEGER NOT NULL,
    PRIMARY KEY (team, feature, minute)
);
"""


def default_db_path(state_dir: str | os.PathLike[str] | None = None) -> Path:
    """The local database file in ``state_dir`` (default: ``default_state_dir()``)."""
    return Path(state_dir).expanduser() / DB_FILE_NAME if state_dir else default_state_dir() / DB_FILE_NAME


def _iso(ts: datetime | None) -> str | None:
    """ISO 8601 in UTC; naive datetimes are taken to be UTC already."""
    if ts is None:
        return None
    return (ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)).isoformat()


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class _SqliteDatabase:
    """One locked connection to the local database, schema created on first open."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path).expanduser() if path else default_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so each transaction is explicit.
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10.0)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across application crashes in WAL mode; enough for a dev machine.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
            # Databases created before keys carried a clearance gain the column (NULL: not recorded).
            columns = {row[1] for row in self._conn.execute("PRAGMA table_info(api_keys)")}
            if "clearance" not in columns:
                self._conn.execute("ALTER TABLE api_keys ADD COLUMN clearance TEXT")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the write lock up front (no upgrade deadlocks)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class SqliteKeyStore(_SqliteDatabase):
    """API keys by hash, looked up by hash (gateway) or key ID (CLI). Never holds a plaintext key."""

    _COLUMNS = (
        "key_hash, key_id, team, feature, allowed_models, monthly_budget_usd, rate_limit_rpm, "
        "created_at, expires_at, revoked_at, description, clearance, tokens_per_minute, max_concurrency"
    )

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(path)
        with self._lock:  # databases created before the token and concurrency limits existed
            present = {row[1] for row in self._conn.execute("PRAGMA table_info(api_keys)")}
            for column, default in (
                ("tokens_per_minute", DEFAULT_TOKENS_PER_MINUTE),
                ("max_concurrency", DEFAULT_MAX_CONCURRENCY),
            ):
                if column not in present:
                    self._conn.execute(
                        f"ALTER TABLE api_keys ADD COLUMN {column} INTEGER NOT NULL DEFAULT {int(default)}"
                    )

    @staticmethod
    def _record(row: sqlite3.Row) -> ApiKeyRecord:
        return ApiKeyRecord(
            key_id=row["key_id"],
            key_hash=row["key_hash"],
            team=row["team"],
            feature=row["feature"],
            allowed_models=tuple(json.loads(row["allowed_models"])),
            monthly_budget_usd=float(row["monthly_budget_usd"]),
            rate_limit_rpm=int(row["rate_limit_rpm"]),
            created_at=_parse(row["created_at"]) or datetime.min.replace(tzinfo=UTC),
            expires_at=_parse(row["expires_at"]),
            revoked_at=_parse(row["revoked_at"]),
            description=row["description"],
            clearance=row["clearance"],
            tokens_per_minute=int(row["tokens_per_minute"]),
            max_concurrency=int(row["max_concurrency"]),
        )

    def _one(self, where: str, value: str) -> ApiKeyRecord | None:
        rows = self._query(f"SELECT {self._COLUMNS} FROM api_keys WHERE {where} = ?", (value,))
        return self._record(rows[0]) if rows else None

    def get_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        return self._one("key_hash", key_hash)

    def get(self, key_id: str) -> ApiKeyRecord | None:
        return self._one("key_id", key_id)

    def put(self, record: ApiKeyRecord) -> None:
        """Insert or replace the record (like DynamoDB PutItem on the hash)."""
        with self._transaction() as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO api_keys ({self._COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    record.key_hash,
                    record.key_id,
                    record.team,
                    record.feature,
                    json.dumps(list(record.allowed_models)),
                    float(record.monthly_budget_usd),
                    int(record.rate_limit_rpm),
                    _iso(record.created_at),
                    _iso(record.expires_at),
                    _iso(record.revoked_at),
                    record.description,
                    record.clearance,
                    int(record.tokens_per_minute),
                    int(record.max_concurrency),
                ),
            )

    def list(self, team: str | None = None) -> list[ApiKeyRecord]:
        """All keys (or one team's), ordered by team, feature, creation time (as the DynamoDB store)."""
        order = " ORDER BY team, feature, created_at, key_id"
        if team is None:
            rows = self._query(f"SELECT {self._COLUMNS} FROM api_keys{order}")
        else:
            rows = self._query(f"SELECT {self._COLUMNS} FROM api_keys WHERE team = ?{order}", (team,))
        return [self._record(r) for r in rows]

    def _set_datetime(self, key_id: str, column: str, at: datetime) -> ApiKeyRecord:
        with self._transaction() as conn:
            cur = conn.execute(f"UPDATE api_keys SET {column} = ? WHERE key_id = ?", (_iso(at), key_id))
            if cur.rowcount == 0:
                raise UnknownKeyError(key_id)
        record = self.get(key_id)
        if record is None:  # deleted by another process in between
            raise UnknownKeyError(key_id)
        return record

    def revoke(self, key_id: str, at: datetime) -> ApiKeyRecord:
        """Set the key's revocation time (may be in the future, e.g. a rotation grace period)."""
        return self._set_datetime(key_id, "revoked_at", at)

    def set_expiry(self, key_id: str, at: datetime) -> ApiKeyRecord:
        """Set the key's expiry time."""
        return self._set_datetime(key_id, "expires_at", at)


class SqliteLedger(_SqliteDatabase):
    """Usage records plus per-feature month and minute counters."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(path)
        self._writes = 0

    def record(self, usage: UsageRecord) -> None:
        """Write the record and add it to its counters in one transaction; a repeated request_id is a
        no-op. Raises LedgerWriteError when SQLite fails (disk full, locked past the timeout, ...)."""
        ts = _utc(usage.timestamp)
        month, minute = month_of(ts), minute_of(ts)
        ttl = int((ts.replace(second=0, microsecond=0) + MINUTE_COUNTER_RETENTION).timestamp())
        try:
            with self._transaction() as conn:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO usage_records"
                    " (request_id, timestamp, month, team, feature, record)"
                    " VALUES (?,?,?,?,?,?)",
                    (
                        usage.request_id,
                        _iso(ts),
                        month,
                        usage.team,
                        usage.feature,
                        json.dumps(usage.to_dict(), sort_keys=True),
                    ),
                )
                if cur.rowcount == 0:
                    return  # already recorded: success, counted once
                conn.execute(
                    "INSERT INTO month_counters (team, feature, month, cost_usd, requests, input_tokens,"
                    " output_tokens, cache_read_tokens, cache_write_tokens) VALUES (?,?,?,?,1,?,?,?,?)"
                    " ON CONFLICT (team, feature, month) DO UPDATE SET"
                    " cost_usd = cost_usd + excluded.cost_usd, requests = requests + 1,"
                    " input_tokens = input_tokens + excluded.input_tokens,"
                    " output_tokens = output_tokens + excluded.output_tokens,"
                    " cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens,"
                    " cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens",
                    (
                        usage.team,
                        usage.feature,
                        month,
                        float(usage.cost_usd),
                        int(usage.input_tokens),
                        int(usage.output_tokens),
                        int(usage.cache_read_tokens),
                        int(usage.cache_write_tokens),
                    ),
                )
                conn.execute(
                    "INSERT INTO minute_counters (team, feature, minute, requests, ttl) VALUES (?,?,?,1,?)"
                    " ON CONFLICT (team, feature, minute) DO UPDATE SET requests = requests + 1,"
                    " ttl = excluded.ttl",
                    (usage.team, usage.feature, minute, ttl),
                )
                self._writes += 1
                if self._writes % _PRUNE_EVERY == 0:
                    conn.execute("DELETE FROM minute_counters WHERE ttl < ?", (int(ts.timestamp()),))
        except sqlite3.Error as exc:
            raise LedgerWriteError(f"local ledger write failed for {usage.request_id}: {exc}") from exc

    def snapshot(self, team: str, feature: str, now: datetime) -> UsageSnapshot:
        """Month-to-date spend and this minute's request count for the feature (zeros when unused)."""
        now = _utc(now)
        month, minute = month_of(now), minute_of(now)
        with self._lock:
            spent = self._conn.execute(
                "SELECT cost_usd FROM month_counters WHERE team = ? AND feature = ? AND month = ?",
                (team, feature, month),
            ).fetchone()
            count = self._conn.execute(
                "SELECT requests FROM minute_counters WHERE team = ? AND feature = ? AND minute = ?",
                (team, feature, minute),
            ).fetchone()
        return UsageSnapshot(
            month=month,
            spent_usd=float(spent[0]) if spent else 0.0,
            minute=minute,
            requests_this_minute=int(count[0]) if count else 0,
        )

    def list_usage(self, month: str | None = None, team: str | None = None) -> list[UsageRecord]:
        """Usage records, oldest first, optionally for one month ("YYYY-MM") and/or one team."""
        clauses, params = [], []
        if month is not None:
            clauses.append("month = ?")
            params.append(month)
        if team is not None:
            clauses.append("team = ?")
            params.append(team)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._query(
            f"SELECT record FROM usage_records{where} ORDER BY timestamp, request_id", tuple(params)
        )
        return [UsageRecord.from_dict(json.loads(r["record"])) for r in rows]

    def find(self, request_id: str) -> UsageRecord | None:
        """The usage record of a request, or None."""
        rows = self._query("SELECT record FROM usage_records WHERE request_id = ?", (request_id,))
        return UsageRecord.from_dict(json.loads(rows[0]["record"])) if rows else None

    def record_feedback(self, feedback: FeedbackRecord) -> None:
        """Store feedback on a request, replacing an earlier one (as the DynamoDB PutItem does)."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO feedback (request_id, month, team, feature, record)"
                " VALUES (?,?,?,?,?)",
                (
                    feedback.request_id,
                    feedback.request_month,
                    feedback.team,
                    feedback.feature,
                    json.dumps(feedback.to_dict(), sort_keys=True),
                ),
            )

    def list_feedback(
        self, month: str | None = None, team: str | None = None, feature: str | None = None
    ) -> list[FeedbackRecord]:
        """Feedback on requests of ``month`` (the request's month), optionally one team's / feature's."""
        clauses, params = [], []
        for column, value in (("month", month), ("team", team), ("feature", feature)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._query(f"SELECT record FROM feedback{where} ORDER BY request_id", tuple(params))
        return [FeedbackRecord.from_dict(json.loads(r["record"])) for r in rows]


_GATE_COLUMNS = tuple(f.name for f in fields(GateState))


class SqliteQuotaStore(_SqliteDatabase):
    """The feature gates of ``aif_gateway.quota`` in the local database: each reservation is one
    ``BEGIN IMMEDIATE`` transaction, so several local gateway processes share the limits exactly."""

    def _gate(self, conn: sqlite3.Connection, team: str, feature: str, month: str) -> GateState:
        row = conn.execute(
            f"SELECT {', '.join(_GATE_COLUMNS)} FROM quota_gates "
            "WHERE team = ? AND feature = ? AND month = ?",
            (team, feature, month),
        ).fetchone()
        return GateState(**dict(row)) if row else GateState()

    def _store(self, conn: sqlite3.Connection, team: str, feature: str, month: str, gate: GateState) -> None:
        values = tuple(getattr(gate, c) for c in _GATE_COLUMNS)
        conn.execute(
            f"INSERT OR REPLACE INTO quota_gates (team, feature, month, {', '.join(_GATE_COLUMNS)}) "
            f"VALUES (?, ?, ?, {', '.join('?' for _ in _GATE_COLUMNS)})",
            (team, feature, month, *values),
        )

    def reserve(self, claim: Claim, limits: Limits, carry: Carry) -> None:
        with self._transaction() as conn:
            gate = admitted(self._gate(conn, claim.team, claim.feature, claim.month), claim, limits, carry)
            self._store(conn, claim.team, claim.feature, claim.month, gate)

    def apply(self, team: str, feature: str, month: str, carry: Carry) -> None:
        with self._transaction() as conn:
            self._store(conn, team, feature, month, applied(self._gate(conn, team, feature, month), carry))

    def state(self, team: str, feature: str, month: str) -> GateState:
        with self._lock:
            return self._gate(self._conn, team, feature, month)
