"""Audit-grade verification of the whole log: every check `verify_event_store` runs.

Each check yields findings (what is wrong, with the aggregate, version and event
id it concerns); none stops at the first, none crashes on a bad row. The checks
that need Python (chain links, MACs, the seal, replay) stream the log once, one
aggregate after another, so memory grows with the longest history read at a
time, not with the log. The rest are SQL.

An app adds checks of its own meaning (the bank: every transfer sent is received
exactly once) with `register_check`.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from django.db import connection

from eventstore import registry, signing
from eventstore.integrity import seal_content
from eventstore.upcasting import upcasters


@dataclass(frozen=True)
class Finding:
    check: str
    detail: str
    aggregate_id: uuid.UUID | None = None
    version: int | None = None
    event_id: int | None = None

    def __str__(self) -> str:
        where = f"{self.aggregate_id} version {self.version} (event {self.event_id}): " if self.aggregate_id else ""
        return f"{self.check}: {where}{self.detail}"


# (title, SQL returning aggregate_id, version, event_id, detail), run over the whole log;
# `{since}` is replaced by a condition on `e` keeping the aggregates written after a position.
SQL_CHECKS: list[tuple[str, str]] = [
    (
        "versions that are not 1..N without gaps",
        """SELECT e.aggregate_id, max(e.version), NULL::bigint,
                  'versions ' || min(e.version) || '..' || max(e.version) || ', ' || count(*) || ' events'
             FROM events e WHERE {since}
            GROUP BY e.aggregate_id HAVING min(e.version) <> 1 OR max(e.version) <> count(*)""",
    ),
    (
        "aggregates whose type changes",
        """SELECT e.aggregate_id, NULL::integer, NULL::bigint, array_agg(DISTINCT e.aggregate_type)::text
             FROM events e WHERE {since} GROUP BY e.aggregate_id HAVING count(DISTINCT e.aggregate_type) > 1""",
    ),
    (
        "events whose global position comes before the version they follow",
        """SELECT aggregate_id, version, id, 'after (' || previous_transaction || ', ' || previous_id || ')'
             FROM (SELECT e.aggregate_id, e.version, e.transaction_id, e.id,
                          lag(e.transaction_id) OVER w AS previous_transaction, lag(e.id) OVER w AS previous_id
                     FROM events e WHERE {since} WINDOW w AS (PARTITION BY e.aggregate_id ORDER BY e.version)) o
            WHERE (previous_transaction, previous_id) > (transaction_id, id)""",
    ),
    (
        "events dated before the version they follow",
        """SELECT aggregate_id, version, id, created_at || ' before ' || previous_created_at
             FROM (SELECT e.aggregate_id, e.version, e.id, e.created_at,
                          lag(e.created_at) OVER w AS previous_created_at
                     FROM events e WHERE {since} WINDOW w AS (PARTITION BY e.aggregate_id ORDER BY e.version)) o
            WHERE created_at < previous_created_at""",
    ),
    (
        "events written with an idempotency key that the command log does not hold",
        """SELECT e.aggregate_id, e.version, e.id, 'key ' || (e.metadata->>'idempotency_key')
             FROM events e
            WHERE {since} AND e.metadata->>'idempotency_key' IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM command_log c
                               WHERE c.key = COALESCE(e.metadata->>'actor', 'anonymous') || ':'
                                             || (e.metadata->>'idempotency_key'))""",
    ),
]


def register_check(title: str, sql: str) -> None:
    """Add a check of the app's own: SQL returning (aggregate_id, version, event_id, detail) rows."""
    SQL_CHECKS.append((title, sql))


def since_condition(after: tuple[int, int] | None) -> tuple[str, list[Any]]:
    """The `{since}` condition: aggregates with an event after `after` (transaction, event id), or all."""
    if after is None:
        return "TRUE", []
    return (
        "e.aggregate_id IN (SELECT n.aggregate_id FROM events n WHERE (n.transaction_id, n.id) > (%s::text::xid8, %s))",
        [str(after[0]), after[1]],
    )


def sql_findings(after: tuple[int, int] | None = None) -> Iterator[Finding]:
    condition, params = since_condition(after)
    with connection.cursor() as cursor:
        for title, query in SQL_CHECKS:
            cursor.execute(query.replace("{since}", condition), params * query.count("{since}"))
            for aggregate_id, version, event_id, detail in cursor.fetchall():
                yield Finding(title, str(detail), aggregate_id, version, event_id)


# Every event with its aggregate's seal, one aggregate after another, quarantined ones left out.
HISTORIES = """
SELECT e.aggregate_id, e.id, e.aggregate_type, e.version, e.event_type, e.event_data::text, e.metadata::text,
       e.created_at, e.chain_hash, e.key_id, e.mac, s.version, s.aggregate_type, s.chain_hash, s.key_id, s.mac
  FROM events e LEFT JOIN event_seal s ON s.aggregate_id = e.aggregate_id
 WHERE {since} AND NOT EXISTS (SELECT 1 FROM event_quarantine q WHERE q.event_id = e.id)
 ORDER BY e.aggregate_id, e.version
"""
SIGNATURES, REPLAY = "events whose signature or chain does not hold", "aggregates whose events cannot be replayed"


def history_findings(after: tuple[int, int] | None = None) -> Iterator[Finding]:
    """Every chain link and MAC (and the seal), and a replay of every aggregate by its registered fold."""
    condition, params = since_condition(after)
    keys = signing.keys()
    with psycopg.ServerCursor(connection.connection, "verify_histories") as cursor:
        cursor.itersize = 5_000
        cursor.execute(HISTORIES.replace("{since}", condition), params)
        for aggregate_id, rows in itertools.groupby(cursor, key=lambda row: row[0]):
            yield from _history(keys, aggregate_id, rows)


def _history(keys: signing.Keys, aggregate_id: uuid.UUID, rows: Iterator[tuple[Any, ...]]) -> Iterator[Finding]:
    chain, signed_seen, broken = signing.GENESIS, False, False
    replay = _Replay(aggregate_id)
    for (_, event_id, aggregate_type, version, event_type, data, metadata, created_at, chain_hash, key_id, mac,
         seal_version, seal_type, seal_hash, seal_key, seal_mac) in rows:  # fmt: skip
        try:
            payload, metadata = signing.parse(data), None if metadata is None else signing.parse(metadata)
            content = signing.event_content(aggregate_id, aggregate_type, version, event_type, payload, metadata,
                                            created_at)  # fmt: skip
        except (ValueError, signing.UnsignableValue) as error:
            yield Finding(SIGNATURES, f"its fields cannot be read ({error})", aggregate_id, version, event_id)
            broken = True
            continue
        chain = signing.link(chain, content)
        if not broken:
            replay.add(aggregate_type, version, event_type, payload)
        if chain_hash is None:
            if signed_seen or seal_version is None or version > seal_version:
                yield Finding(SIGNATURES, "it is not signed and no seal covers it", aggregate_id, version, event_id)
                broken = True
            elif version == seal_version:
                sealed = seal_content(aggregate_id, seal_type, seal_version, bytes(seal_hash))
                if chain != seal_hash or not keys.verifies(signing.SEAL, sealed, seal_key, seal_mac):
                    yield Finding(SIGNATURES, "the history up to it is not the one sealed", aggregate_id, version,
                                  event_id)  # fmt: skip
                    broken = True
            continue
        signed_seen = True
        if chain != chain_hash:
            yield Finding(SIGNATURES, "it is not the event that was signed at this place", aggregate_id, version,
                          event_id)  # fmt: skip
            broken, chain = True, bytes(chain_hash)  # go on from what was signed, to find later breaks too
        elif not keys.verifies(signing.EVENT, chain, key_id, mac):
            yield Finding(SIGNATURES, f"its MAC (key {key_id!r}) is not valid", aggregate_id, version, event_id)
            broken = True
    if not broken and (failure := replay.end()) is not None:
        yield failure


class _Replay:
    """One aggregate folded by its registered fold, a batch of events at a time (memory stays flat)."""

    BATCH = 1_000

    def __init__(self, aggregate_id: uuid.UUID) -> None:
        self.aggregate_id, self.state, self.pending = aggregate_id, None, list[tuple[int, str, Any]]()
        self.aggregate: registry.Aggregate[Any] | None = None
        self.failure: Finding | None = None

    def add(self, aggregate_type: str, version: int, event_type: str, payload: Any) -> None:
        self.aggregate = self.aggregate or registry.aggregates.get(aggregate_type)
        self.pending.append((version, event_type, upcasters.upcast(event_type, payload)))
        if len(self.pending) >= self.BATCH:
            self._fold()

    def end(self) -> Finding | None:
        self._fold()
        return self.failure

    def _fold(self) -> None:
        if self.aggregate is None or self.failure is not None or not self.pending:
            return
        try:
            self.state = self.aggregate.fold(self.aggregate_id, self.pending, self.state)
        except Exception as error:  # a finding about the log, whatever the aggregate's code raises
            self.failure = Finding(REPLAY, str(error)[:300], self.aggregate_id, getattr(error, "version", None))
        self.pending = []
