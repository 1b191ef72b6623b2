"""Loading an aggregate from its latest snapshot plus the events after it.

A snapshot is a cache: `load_with_snapshot` must give exactly what loading the
whole history gives, which the tests check for every step of random histories,
and it never trusts a snapshot that disagrees with its row or with the log.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import Counter
from datetime import datetime
from typing import Any, Callable, NamedTuple

from eventstore import db
from eventstore.store import as_uuid
from eventstore.upcasting import upcasters


logger = logging.getLogger(__name__)

# Snapshots found unusable since the process started, by reason (see `load_with_snapshot`).
ignored: Counter[str] = Counter()


class Loaded(NamedTuple):
    """What folding an aggregate needs, and the database's clock once its lock was held."""

    start: Any | None  # the aggregate restored from a usable snapshot, or None
    events: list[tuple[str, dict]]  # (event type, current-schema payload) after it, in version order
    clock: datetime | None  # the database's clock after the lock; None when the log has nothing for the aggregate


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


def load_with_snapshot(
    aggregate_id,
    *,
    schema: int | None,
    restore: Callable[[dict], Any],
    up_to_version: int | None = None,
    lock: bool = False,
) -> Loaded:
    """The latest usable snapshot of `schema` at or below `up_to_version`, and the events after it.

    `restore(state)` rebuilds the aggregate from a snapshot's state; it must have
    the `id` and `version` of the row. A snapshot is a cache that anyone holding
    the application's role can write, so one that does not parse, names another
    aggregate or version, or is ahead of the log is ignored (logged and counted)
    and the aggregate comes from its events alone, as it does with `schema=None`.

    With `lock`, first take the aggregate's writer lock (held to the end of the
    transaction; see eventstore.commands): the load then sees every write of
    whoever held it before. A command locking several aggregates must load them
    in `lock_key` order, so that two such commands cannot deadlock.
    """
    if up_to_version == 0:
        return Loaded(None, [], None)
    aggregate_id = as_uuid(aggregate_id)
    up_to = up_to_version or _NO_LIMIT
    rows = db.fetchall(_LOAD, [aggregate_id, schema, up_to, lock_key(aggregate_id) if lock else None])
    clock, rows = rows[0][3], rows[1:]
    start = None
    if rows and rows[0][0] is None:
        start = _restored(aggregate_id, rows[0], restore)
        rows = rows[1:] if start is not None else db.fetchall(_LOAD, [aggregate_id, None, up_to, None])[1:]
    upcast = upcasters.upcast
    events = [(event_type, upcast(event_type, json.loads(data))) for event_type, data, *_ in rows]
    return Loaded(start, events, clock if (events or start is not None) else None)


def _restored(aggregate_id: uuid.UUID, row: tuple, restore: Callable[[dict], Any]) -> Any | None:
    """The aggregate from a snapshot row, or None (logged and counted) when the row cannot be trusted."""
    _, payload, version, event_time = row
    try:
        start = restore(json.loads(payload))
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


def save_snapshot(
    aggregate_id, aggregate_type: str, *, version: int, schema: int, state: dict, replace: bool = False
) -> None:
    """Keep `state` as the aggregate's snapshot unless a newer one of this schema exists (or always, with `replace`)."""
    statement = _SAVE if replace else _SAVE + _ONLY_NEWER
    db.write(statement, [as_uuid(aggregate_id), aggregate_type, version, schema, json.dumps(state)])


def crosses_snapshot_boundary(old_version: int, new_version: int, every: int) -> bool:
    """True when an append from old_version to new_version passes a multiple of `every`."""
    return every > 0 and old_version // every != new_version // every
