"""Loading an aggregate from its latest snapshot plus the events after it.

A snapshot is a cache: `load` must give exactly what folding the whole history
gives, which the tests check for every step of random histories,
and it never trusts a snapshot that disagrees with its row or with the log.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import Counter, OrderedDict
from datetime import datetime
from typing import Any, Generic, NamedTuple

from django.conf import settings

from eventstore import db, signing
from eventstore.integrity import Chain, Row, snapshot_verifies
from eventstore.registry import Aggregate, S
from eventstore.store import EventStore

logger = logging.getLogger(__name__)

# Snapshots found unusable since the process started, by reason (see `load`).
ignored: Counter[str] = Counter()


class Loaded(NamedTuple, Generic[S]):
    """An aggregate's state, the database's clock once its lock was held, and its chain head."""

    state: S
    clock: datetime | None  # None when the log has nothing for the aggregate (or nothing up to the version asked)
    chain_hash: bytes = signing.GENESIS  # the chain hash of the state's last event (see eventstore.signing)
    quarantined: int = 0  # how many of the aggregate's events the owner had quarantined (all skipped)
    # The last version stored, which the next event follows: the state's own, unless the owner
    # quarantined the events after it (they stay in the log, skipped).
    stored_version: int = 0


# The clock row, the seal row, the snapshot row and the tail, after the lock
# if a key is given: one round trip (the function is in migration 0013).
_LOAD = "SELECT * FROM events_load(%s, %s, %s, %s)"

_SAVE = """
INSERT INTO snapshots (aggregate_id, aggregate_type, version, schema_version, state, taken_at, chain_hash, key_id, mac)
VALUES (%s, %s, %s, %s, %s::jsonb, now(), %s, %s, %s)
ON CONFLICT (aggregate_id, version) DO UPDATE
   SET version = EXCLUDED.version, schema_version = EXCLUDED.schema_version,
       state = EXCLUDED.state, taken_at = EXCLUDED.taken_at, chain_hash = EXCLUDED.chain_hash,
       key_id = EXCLUDED.key_id, mac = EXCLUDED.mac
"""
# Every snapshot is kept (a past view starts from the nearest). A command's snapshot replaces
# one at the same version only if it is of another schema; take_snapshots replaces it anyway.
_ONLY_NEWER = " WHERE snapshots.schema_version <> EXCLUDED.schema_version"

_NO_LIMIT = 2**31 - 1

# The clock row (with the aggregate's latest version), the seal row and the events after
# a version the reader holds, after the lock if a key is given (migration 0013).
_LOAD_AFTER = "SELECT * FROM events_load_after(%s, %s, %s)"


class Recent:
    """The states this process's own commands committed, by aggregate id, the least recently used dropped first.

    A command starts from one and reads only the events written since, instead of
    decoding the tail after a snapshot again. It is the process's own memory, never
    a row anyone else can write, so it is trusted as a snapshot is not; and only a
    committed state goes in (see eventstore.commands). One the log is behind (its
    transaction was rolled back after all) is noticed at the next load and dropped.
    """

    def __init__(self) -> None:
        self._states: OrderedDict[uuid.UUID, tuple[str, Loaded[Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, aggregate: Aggregate[S], aggregate_id: uuid.UUID) -> Loaded[S] | None:
        """The state held for the aggregate, with its chain hash and quarantine count, if any."""
        with self._lock:
            held = self._states.get(aggregate_id)
            if held is None or held[0] != aggregate.type or not settings.EVENTSTORE_RECENT_STATES:
                return None
            self._states.move_to_end(aggregate_id)
            return held[1]

    def keep(self, aggregate: Aggregate[S], loaded: Loaded[S]) -> None:
        size: int = settings.EVENTSTORE_RECENT_STATES
        # A copy (a fold of nothing): a caller may change the state it was given; the held one stays as committed.
        state = loaded.state
        held = loaded._replace(state=aggregate.fold(state.id, (), state))
        with self._lock:
            self._states[state.id] = (aggregate.type, held)
            self._states.move_to_end(state.id)
            while len(self._states) > size:
                self._states.popitem(last=False)

    def forget(self, aggregate_id: uuid.UUID) -> None:
        with self._lock:
            self._states.pop(aggregate_id, None)


recent = Recent()


def load(
    aggregate: Aggregate[S],
    aggregate_id: uuid.UUID,
    *,
    up_to_version: int | None = None,
    lock: bool = False,
    from_events_only: bool = False,
    alias: str = db.PRIMARY,
) -> Loaded[S]:
    """The aggregate from its latest usable snapshot at or below `up_to_version` and the events after it.

    A snapshot is a cache that anyone holding the application's role can write, so
    one that does not parse, names another aggregate or version, or is ahead of the
    log is ignored (logged and counted) and the aggregate is folded from its events
    alone, as it is with `from_events_only`.

    With `lock`, first take the aggregate's writer lock (held to the end of the
    transaction; see eventstore.commands): the load then sees every write of
    whoever held it before.
    """
    (loaded,) = load_each(aggregate, [aggregate_id], up_to_version=up_to_version, lock=lock,
                          from_events_only=from_events_only, alias=alias)  # fmt: skip
    return loaded


def load_each(
    aggregate: Aggregate[S],
    aggregate_ids: list[uuid.UUID],
    *,
    up_to_version: int | None = None,
    lock: bool = False,
    from_events_only: bool = False,
    alias: str = db.PRIMARY,
) -> list[Loaded[S]]:
    """`load` for several aggregates at once: inside a command, one round trip for all of them.

    With `lock` (a command), the locks are taken in the order given: a command
    locking several aggregates gives them in `lock_key` order, so that two such
    commands cannot deadlock. A command also starts from the state this process
    last committed for an aggregate, when it holds one (`recent`).
    """
    if up_to_version == 0:
        return [Loaded(aggregate.new(aggregate_id), None) for aggregate_id in aggregate_ids]
    up_to = up_to_version or _NO_LIMIT
    schema = None if from_events_only else aggregate.state_schema
    held = [recent.get(aggregate, i) if lock and up_to_version is None else None for i in aggregate_ids]
    statements = [
        (_LOAD, [i, schema, up_to, lock_key(i) if lock else None]) if kept is None
        else (_LOAD_AFTER, [i, kept.state.version, lock_key(i) if lock else None])
        for i, kept in zip(aggregate_ids, held, strict=True)
    ]  # fmt: skip
    results = db.fetch_each(statements, alias=alias)
    loaded = []
    for i, kept, result in zip(aggregate_ids, held, results, strict=True):
        clock, seal, rows = _heading(result)
        # Held from a transaction rolled back after all, or from before the owner quarantined an event.
        if kept is not None and (clock.version < kept.state.version or clock.id != kept.quarantined):
            recent.forget(i)
            kept, (_, seal, rows) = None, _read(i, schema, up_to, alias)
        if kept is None:
            loaded.append(_folded(aggregate, i, clock, seal, rows, up_to, alias))
        else:
            loaded.append(_after(aggregate, kept, clock, seal, rows))
    return loaded


def _read(aggregate_id: uuid.UUID, schema: int | None, up_to: int,
          alias: str) -> tuple[Row, Row | None, list[tuple[Any, ...]]]:  # fmt: skip
    """events_load again, without the lock (already held): a snapshot was found unusable, say."""
    return _heading(db.fetchall(_LOAD, [aggregate_id, schema, up_to, None], alias=alias))


def _heading(rows: list[tuple[Any, ...]]) -> tuple[Row, Row | None, list[tuple[Any, ...]]]:
    """The clock row, the seal row (if the aggregate was sealed) and the rest (a snapshot row perhaps, then events)."""
    clock, rest = Row(*rows[0]), rows[1:]
    if rest and rest[0][0] == "seal":
        return clock, Row(*rest[0]), rest[1:]
    return clock, None, rest


def _after(aggregate: Aggregate[S], kept: Loaded[S], clock: Row, seal: Row | None,
           rows: list[tuple[Any, ...]]) -> Loaded[S]:  # fmt: skip
    """The held state with the events after it folded on, each checked."""
    state = kept.state
    if not rows:
        return kept._replace(clock=clock.at, stored_version=max(clock.version, state.version))
    chain = Chain(state.id, kept.chain_hash, state.version, seal)
    after = _checked_fold(aggregate, chain, rows, state)
    return Loaded(after, clock.at, chain.close(), kept.quarantined, max(clock.version, after.version))


def _folded(aggregate: Aggregate[S], aggregate_id: uuid.UUID, clock: Row, seal: Row | None,
            rows: list[tuple[Any, ...]], up_to: int, alias: str) -> Loaded[S]:  # fmt: skip
    """The state the rows of events_load give (a snapshot row perhaps, then the tail), each checked."""
    start, chain = None, Chain(aggregate_id, signing.GENESIS, 0, seal)
    if rows and rows[0][0] == "snapshot":
        snapshot = Row(*rows[0])
        start = _restored(aggregate, aggregate_id, snapshot)
        if start is None:
            rows = _read(aggregate_id, None, up_to, alias)[2]
        else:
            chain = Chain(aggregate_id, bytes(snapshot.chain_hash or b""), start.version, seal)
            rows = rows[1:]
    state = _checked_fold(aggregate, chain, rows, start)
    stored = max(clock.version, state.version) if up_to == _NO_LIMIT else state.version
    return Loaded(state, clock.at if chain.version else None, chain.close(), clock.id or 0, stored)


def _checked_fold(aggregate: Aggregate[S], chain: Chain, rows: list[tuple[Any, ...]], start: S | None) -> S:
    """The fold of the rows as the chain checks them. An event the fold refuses may be one forged
    at the next link without the key: its signature is checked first, so that the hold names it."""
    try:
        return aggregate.fold(chain.aggregate_id, chain.follow(rows), start)
    except Exception:
        chain.close()
        raise


def load_at(
    aggregate: Aggregate[S],
    aggregate_id: uuid.UUID,
    *,
    version: int | None = None,
    as_of: datetime | None = None,
    from_events_only: bool = False,
) -> S:
    """The aggregate as it stood at `version`, or at the moment `as_of` (whichever came first), or now.

    For the pages: read where db.reads() says, never locked.
    """
    if as_of is not None:
        at_time = EventStore().version_at(aggregate_id, as_of)
        version = at_time if version is None else min(version, at_time)
    loaded = load(aggregate, aggregate_id, up_to_version=version, from_events_only=from_events_only, alias=db.reads())
    return loaded.state


def _restored(aggregate: Aggregate[S], aggregate_id: uuid.UUID, row: Row) -> S | None:
    """The state a snapshot row holds, or None (logged and counted) when the row cannot be trusted."""
    try:
        state = json.loads(row.payload or "null")
        start = aggregate.from_snapshot(state)
        reason = None
        if not snapshot_verifies(aggregate_id, aggregate.state_schema, row, state):
            reason = "is not signed by this application"
        elif start.id != aggregate_id or start.version != row.version:
            reason = "names another aggregate or version"
        elif row.at is None:
            reason = "is ahead of the log"
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        reason = f"does not parse ({type(error).__name__})"
    if reason is None:
        return start
    ignored[reason] += 1
    logger.warning("snapshot of %s at version %s %s: ignored; replaying from events", aggregate_id, row.version, reason)
    return None


def lock_key(aggregate_id: uuid.UUID) -> int:
    """The aggregate's advisory-lock key: a signed 64-bit number from its id."""
    return int.from_bytes(aggregate_id.bytes[:8], "big", signed=True)


def save(aggregate: Aggregate[S], state: S, chain_hash: bytes, *, replace: bool = False) -> None:
    """Keep `state` (whose last event's chain hash is `chain_hash`), signed, as the aggregate's
    snapshot unless a newer one of this schema exists (or always, with `replace`)."""
    statement = _SAVE if replace else _SAVE + _ONLY_NEWER
    snapshot = aggregate.to_snapshot(state)
    content = signing.snapshot_content(state.id, state.version, aggregate.state_schema, snapshot, chain_hash)
    key_id, mac = signing.keys().sign(signing.SNAPSHOT, content)
    db.write(statement, [state.id, aggregate.type, state.version, aggregate.state_schema, json.dumps(snapshot),
                         chain_hash, key_id, mac])  # fmt: skip


def take(aggregate: Aggregate[S], aggregate_id: uuid.UUID) -> S:
    """Replay the aggregate from its events (each checked) and keep the state as its snapshot, whatever was there."""
    loaded = load(aggregate, aggregate_id, from_events_only=True)
    if loaded.state.version:
        save(aggregate, loaded.state, loaded.chain_hash, replace=True)
    return loaded.state


def every(aggregate: Aggregate[Any]) -> int:
    """The aggregate's snapshot policy: a snapshot every this many events (0: never)."""
    return settings.EVENTSTORE_SNAPSHOT_EVERY if aggregate.snapshot_every is None else aggregate.snapshot_every


def due(aggregate: Aggregate[Any], old_version: int, new_version: int) -> bool:
    """Whether an append from old_version to new_version passes a multiple of the snapshot interval."""
    interval = every(aggregate)
    return interval > 0 and old_version // interval != new_version // interval
