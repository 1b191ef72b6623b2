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

from eventstore import db
from eventstore.registry import Aggregate, S
from eventstore.store import EventStore
from eventstore.upcasting import upcasters

logger = logging.getLogger(__name__)

# Snapshots found unusable since the process started, by reason (see `load`).
ignored: Counter[str] = Counter()


class Loaded(NamedTuple, Generic[S]):
    """An aggregate's state, and the database's clock once its lock was held."""

    state: S
    clock: datetime | None  # None when the log has nothing for the aggregate (or nothing up to the version asked)


# The clock row, the snapshot row (event_type NULL) and the tail, after the lock
# if a key is given: one round trip (the function is in migration 0010).
_LOAD = "SELECT event_type, payload, version, at FROM events_load(%s, %s, %s, %s)"

_SAVE = """
INSERT INTO snapshots (aggregate_id, aggregate_type, version, schema_version, state, taken_at)
VALUES (%s, %s, %s, %s, %s::jsonb, now())
ON CONFLICT (aggregate_id) DO UPDATE
   SET version = EXCLUDED.version, schema_version = EXCLUDED.schema_version,
       state = EXCLUDED.state, taken_at = EXCLUDED.taken_at
"""
# A command's snapshot never replaces a newer one; take_snapshots replaces whatever is there.
_ONLY_NEWER = " WHERE snapshots.version < EXCLUDED.version OR snapshots.schema_version <> EXCLUDED.schema_version"

_NO_LIMIT = 2**31 - 1

# The clock row (with the aggregate's latest version) and the events after a version
# the reader holds, after the lock if a key is given (the function is in migration 0012).
_LOAD_AFTER = "SELECT event_type, payload, version, at FROM events_load_after(%s, %s, %s)"


class Recent:
    """The states this process's own commands committed, by aggregate id, the least recently used dropped first.

    A command starts from one and reads only the events written since, instead of
    decoding the tail after a snapshot again. It is the process's own memory, never
    a row anyone else can write, so it is trusted as a snapshot is not; and only a
    committed state goes in (see eventstore.commands). One the log is behind (its
    transaction was rolled back after all) is noticed at the next load and dropped.
    """

    def __init__(self) -> None:
        self._states: OrderedDict[uuid.UUID, tuple[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, aggregate: Aggregate[S], aggregate_id: uuid.UUID) -> S | None:
        with self._lock:
            held = self._states.get(aggregate_id)
            if held is None or held[0] != aggregate.type or not settings.EVENTSTORE_RECENT_STATES:
                return None
            self._states.move_to_end(aggregate_id)
            state: S = held[1]
            return state

    def keep(self, aggregate: Aggregate[S], state: S) -> None:
        size: int = settings.EVENTSTORE_RECENT_STATES
        # A copy (a fold of nothing): a caller may change the state it was given; the held one stays as committed.
        held = aggregate.fold(state.id, (), state)
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
        (_LOAD, [i, schema, up_to, lock_key(i) if lock else None]) if state is None
        else (_LOAD_AFTER, [i, state.version, lock_key(i) if lock else None])
        for i, state in zip(aggregate_ids, held, strict=True)
    ]  # fmt: skip
    results = db.fetch_each(statements, alias=alias)
    loaded = []
    for i, state, rows in zip(aggregate_ids, held, results, strict=True):
        if state is not None and rows[0][2] < state.version:  # held from a transaction rolled back after all
            recent.forget(i)
            state, rows = None, db.fetchall(_LOAD, [i, schema, up_to, None], alias=alias)
        loaded.append(_folded(aggregate, i, rows, up_to, alias) if state is None else _after(aggregate, state, rows))
    return loaded


def _after(aggregate: Aggregate[S], state: S, rows: list[tuple[Any, ...]]) -> Loaded[S]:
    """The held state with the events after it (the rows of events_load_after) folded on."""
    clock, rows = rows[0][3], rows[1:]
    upcast = upcasters.upcast
    events = [(event_type, upcast(event_type, json.loads(data))) for event_type, data, *_ in rows]
    return Loaded(aggregate.fold(state.id, events, state) if events else state, clock)


def _folded(aggregate: Aggregate[S], aggregate_id: uuid.UUID, rows: list[tuple[Any, ...]], up_to: int,
            alias: str) -> Loaded[S]:  # fmt: skip
    """The state the rows of events_load give (the clock row, a snapshot row perhaps, the tail)."""
    clock, rows = rows[0][3], rows[1:]
    start = None
    if rows and rows[0][0] is None:
        start = _restored(aggregate, aggregate_id, rows[0])
        rows = rows[1:] if start is not None else db.fetchall(_LOAD, [aggregate_id, None, up_to, None], alias=alias)[1:]
    upcast = upcasters.upcast
    events = [(event_type, upcast(event_type, json.loads(data))) for event_type, data, *_ in rows]
    state = aggregate.fold(aggregate_id, events, start)
    return Loaded(state, clock if (events or start is not None) else None)


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


def _restored(aggregate: Aggregate[S], aggregate_id: uuid.UUID, row: tuple[Any, ...]) -> S | None:
    """The state a snapshot row holds, or None (logged and counted) when the row cannot be trusted."""
    _, payload, version, event_time = row
    try:
        start = aggregate.from_snapshot(json.loads(payload))
        reason = None
        if start.id != aggregate_id or start.version != version:
            reason = "names another aggregate or version"
        elif event_time is None:
            reason = "is ahead of the log"
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        reason = f"does not parse ({type(error).__name__})"
    if reason is None:
        return start
    ignored[reason] += 1
    logger.warning("snapshot of %s at version %s %s: ignored; replaying from events", aggregate_id, version, reason)
    return None


def lock_key(aggregate_id: uuid.UUID) -> int:
    """The aggregate's advisory-lock key: a signed 64-bit number from its id."""
    return int.from_bytes(aggregate_id.bytes[:8], "big", signed=True)


def save(aggregate: Aggregate[S], state: S, *, replace: bool = False) -> None:
    """Keep `state` as the aggregate's snapshot unless a newer one of this schema exists (or always, with `replace`)."""
    statement = _SAVE if replace else _SAVE + _ONLY_NEWER
    payload = json.dumps(aggregate.to_snapshot(state))
    db.write(statement, [state.id, aggregate.type, state.version, aggregate.state_schema, payload])


def every(aggregate: Aggregate[Any]) -> int:
    """The aggregate's snapshot policy: a snapshot every this many events (0: never)."""
    return settings.EVENTSTORE_SNAPSHOT_EVERY if aggregate.snapshot_every is None else aggregate.snapshot_every


def due(aggregate: Aggregate[Any], old_version: int, new_version: int) -> bool:
    """Whether an append from old_version to new_version passes a multiple of the snapshot interval."""
    interval = every(aggregate)
    return interval > 0 and old_version // interval != new_version // interval
