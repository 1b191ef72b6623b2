"""Loading an aggregate from its latest snapshot plus the events after it.

A snapshot is a cache: `load_with_snapshot` must give exactly what loading the
whole history gives, which the tests check for every step of random histories.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, NamedTuple

from eventstore import db
from eventstore.store import as_uuid
from eventstore.upcasting import upcasters


class SnapshotState(NamedTuple):
    version: int
    state: dict[str, Any]


# The snapshot row (event_type NULL) and the tail, after the lock if a key is
# given: one round trip (the function is in migration 0003).
_LOAD = "SELECT event_type, payload, version FROM events_load(%s, %s, %s, %s)"

_SAVE = """
INSERT INTO snapshots (aggregate_id, aggregate_type, version, schema_version, state, taken_at)
VALUES (%s, %s, %s, %s, %s::jsonb, now())
ON CONFLICT (aggregate_id) DO UPDATE
   SET version = EXCLUDED.version, schema_version = EXCLUDED.schema_version,
       state = EXCLUDED.state, taken_at = EXCLUDED.taken_at
 WHERE snapshots.version < EXCLUDED.version OR snapshots.schema_version <> EXCLUDED.schema_version
"""

_NO_LIMIT = 2**31 - 1


def load_with_snapshot(
    aggregate_id, *, schema: int, up_to_version: int | None = None, lock: bool = False
) -> tuple[SnapshotState | None, list[tuple[str, dict]]]:
    """The latest snapshot of `schema` at or below `up_to_version`, and the (type, data) after it.

    With `lock`, first take the aggregate's writer lock (held to the end of the
    transaction; see eventstore.commands): the load then sees every write of
    whoever held it before. A command locking several aggregates must load them
    in `lock_key` order, so that two such commands cannot deadlock.
    """
    if up_to_version == 0:
        return None, []
    aggregate_id = as_uuid(aggregate_id)
    rows = db.fetchall(
        _LOAD, [aggregate_id, schema, up_to_version or _NO_LIMIT, lock_key(aggregate_id) if lock else None]
    )
    snapshot = None
    if rows and rows[0][0] is None:
        snapshot = SnapshotState(rows[0][2], json.loads(rows[0][1]))
        rows = rows[1:]
    upcast = upcasters.upcast
    return snapshot, [(event_type, upcast(event_type, json.loads(data))) for event_type, data, _ in rows]


def lock_key(aggregate_id: uuid.UUID) -> int:
    """The aggregate's advisory-lock key: a signed 64-bit number from its id."""
    return int.from_bytes(aggregate_id.bytes[:8], "big", signed=True)


def save_snapshot(aggregate_id, aggregate_type: str, *, version: int, schema: int, state: dict) -> None:
    """Keep `state` as the aggregate's snapshot unless a newer one of this schema exists."""
    db.write(_SAVE, [as_uuid(aggregate_id), aggregate_type, version, schema, json.dumps(state)])


def crosses_snapshot_boundary(old_version: int, new_version: int, every: int) -> bool:
    """True when an append from old_version to new_version passes a multiple of `every`."""
    return every > 0 and old_version // every != new_version // every
