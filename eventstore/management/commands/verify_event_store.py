"""verify_event_store: check the log's own invariants, and every snapshot against the log."""

import itertools
import json
from typing import Any

import psycopg
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction

from eventstore import registry
from eventstore.management.commands.verify_projections import MAX_SHOWN, counted, example_count
from eventstore.upcasting import upcasters

GUARDS = {"events_no_update", "events_no_delete", "events_no_truncate", "events_append_guard"}

CHECKS = [
    (
        "versions that are not 1..N without gaps",
        """SELECT aggregate_id, min(version), max(version), count(*) FROM events
            GROUP BY aggregate_id HAVING min(version) <> 1 OR max(version) <> count(*)""",
    ),
    (
        "aggregates whose type changes",
        "SELECT aggregate_id, array_agg(DISTINCT aggregate_type) FROM events "
        "GROUP BY aggregate_id HAVING count(DISTINCT aggregate_type) > 1",
    ),
    (
        "events whose global position comes before the version they follow",
        """SELECT aggregate_id, version FROM (
               SELECT aggregate_id, version, transaction_id, id,
                      lag(transaction_id) OVER w AS previous_transaction, lag(id) OVER w AS previous_id
                 FROM events WINDOW w AS (PARTITION BY aggregate_id ORDER BY version)) ordered
            WHERE (previous_transaction, previous_id) > (transaction_id, id)""",
    ),
    (
        "events dated before the version they follow",
        """SELECT aggregate_id, version, created_at, previous_created_at FROM (
               SELECT aggregate_id, version, created_at, lag(created_at) OVER w AS previous_created_at
                 FROM events WINDOW w AS (PARTITION BY aggregate_id ORDER BY version)) ordered
            WHERE created_at < previous_created_at""",
    ),
]

# Every snapshot of a current state schema with the events up to its version, one aggregate after another.
SNAPSHOTS_WITH_EVENTS = """
SELECT s.aggregate_id, s.aggregate_type, s.version, s.schema_version, s.state, e.event_type, e.event_data, e.version
  FROM snapshots s LEFT JOIN events e ON e.aggregate_id = s.aggregate_id AND e.version <= s.version
 ORDER BY s.aggregate_id, e.version
"""
SNAPSHOT_CHECK = "snapshots that differ from a replay of their events"


class Command(BaseCommand):
    help = (
        "Check that every aggregate's versions are 1..N without gaps and of one type, that the "
        "guard triggers are installed and enabled, and that the global order (transaction, id) "
        "and created_at agree with each aggregate's version order, and that every snapshot equals a "
        "replay of the events up to its version. Exits 1 on any finding."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--show", type=example_count, default=20,
            help=f"At most this many examples per check, 0 to {MAX_SHOWN}; all are counted.",
        )  # fmt: skip

    def handle(self, *args: Any, show: int, **options: Any) -> None:
        lines = self._guards()
        found = len(lines)
        with connection.cursor() as cursor:
            for title, query in CHECKS:
                cursor.execute(f"SELECT count(*) FROM ({query}) found")
                count = cursor.fetchone()[0]
                self.stdout.write(f"{title}: {f'{count} FOUND' if count else 'none'}")
                if count and show:
                    cursor.execute(f"{query} LIMIT %s", [show])
                    lines += [f"{title}: {row}" for row in cursor.fetchall()]
                found += count
        count, examples = self._snapshots()
        self.stdout.write(f"{SNAPSHOT_CHECK}: {f'{count} FOUND' if count else 'none'}")
        lines += [f"{SNAPSHOT_CHECK}: {example}" for example in examples[:show]]
        found += count
        for line in lines:
            self.stdout.write(line)
        if found:
            raise CommandError(f"{counted(found, 'finding')} in the event store.", returncode=1)
        self.stdout.write(self.style.SUCCESS("event store ok"))

    def _guards(self) -> list[str]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'events'::regclass AND NOT tgisinternal"
            )
            installed = dict(cursor.fetchall())
        missing = sorted(GUARDS - set(installed))
        disabled = sorted(name for name in GUARDS & set(installed) if installed[name] == "D")
        self.stdout.write(f"guard triggers: {'ok' if not (missing or disabled) else 'FOUND'}")
        return [f"guard trigger missing: {name}" for name in missing] + [
            f"guard trigger disabled: {name}" for name in disabled
        ]

    def _snapshots(self) -> tuple[int, list[str]]:
        """Replay each snapshot's aggregate up to the snapshot's version and compare the states.

        A snapshot is a cache anyone holding the application's role can write;
        one of an older state schema is ignored by every load, so it is skipped here.
        """
        problems: list[str] = []
        connection.ensure_connection()
        with transaction.atomic(), psycopg.ServerCursor(connection.connection, "verify_snapshots") as cursor:
            cursor.itersize = 2_000
            cursor.execute(SNAPSHOTS_WITH_EVENTS)
            for (aggregate_id, aggregate_type, version, schema, state), rows in itertools.groupby(
                cursor, key=lambda row: row[:5]
            ):
                known = registry.aggregates.get(aggregate_type)
                if known is None or schema != known.state_schema:
                    continue
                events = [
                    (row[7], row[5], upcasters.upcast(row[5], json.loads(row[6]))) for row in rows if row[5] is not None
                ]
                try:
                    replayed = known.to_snapshot(known.fold(aggregate_id, events, None))
                except Exception as error:  # a finding about the log, whatever the aggregate's code raises
                    problems.append(f"{aggregate_id} at version {version}: its events cannot be replayed ({error})")
                    continue
                if replayed != json.loads(state):
                    problems.append(f"{aggregate_id} at version {version}: {state} but replay gives {replayed}")
        return len(problems), problems
