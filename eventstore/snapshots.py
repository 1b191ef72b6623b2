"""Loading an aggregate from its latest snapshot plus the events after it.

A snapshot is a cache: `load_with_snapshot` must give exactly what loading the
whole history gives, which the tests check for every step of random histories.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from django.db import connection

from eventstore.store import COLUMNS, StoredEvent, as_uuid, row_to_event


class SnapshotState(NamedTuple):
    version: int
    state: dict[str, Any]


# One round trip: the usable snapshot (if any) as the first row, then the tail.
_LOAD = f"""
WITH snap AS (
    SELECT version, state FROM snapshots
     WHERE aggregate_id = %(id)s AND schema_version = %(schema)s AND version <= %(up_to)s
)
SELECT NULL::bigint, NULL::uuid, NULL, NULL, state, NULL::jsonb, version, NULL::timestamptz, NULL FROM snap
UNION ALL
(SELECT {COLUMNS} FROM events
  WHERE aggregate_id = %(id)s
    AND version > COALESCE((SELECT version FROM snap), 0)
    AND version <= %(up_to)s
  ORDER BY version)
"""

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
    aggregate_id, *, schema: int, up_to_version: int | None = None
) -> tuple[SnapshotState | None, list[StoredEvent]]:
    """The latest snapshot of `schema` at or below `up_to_version`, and the events after it."""
    params = {"id": as_uuid(aggregate_id), "schema": schema, "up_to": up_to_version or _NO_LIMIT}
    if up_to_version == 0:
        return None, []
    with connection.cursor() as cursor:
        cursor.execute(_LOAD, params)
        rows = cursor.fetchall()
    snapshot = None
    if rows and rows[0][0] is None:
        snapshot = SnapshotState(rows[0][6], json.loads(rows[0][4]))
        rows = rows[1:]
    return snapshot, [row_to_event(row) for row in rows]


def save_snapshot(aggregate_id, aggregate_type: str, *, version: int, schema: int, state: dict) -> None:
    """Keep `state` as the aggregate's snapshot unless a newer one of this schema exists."""
    with connection.cursor() as cursor:
        cursor.execute(_SAVE, [as_uuid(aggregate_id), aggregate_type, version, schema, json.dumps(state)])


def crosses_snapshot_boundary(old_version: int, new_version: int, every: int) -> bool:
    """True when an append from old_version to new_version passes a multiple of `every`."""
    return every > 0 and old_version // every != new_version // every
