"""verify_event_store: check the log's own invariants."""

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from eventstore.management.commands.verify_projections import MAX_SHOWN, example_count

GUARDS = {"events_no_update", "events_no_delete", "events_no_truncate", "events_append_guard"}

CHECKS = [
    (
        "versions that are not 1..N without gaps",
        """SELECT aggregate_id, min(version), max(version), count(*) FROM events
            GROUP BY aggregate_id HAVING min(version) <> 1 OR max(version) <> count(*) LIMIT %s""",
    ),
    (
        "aggregates whose type changes",
        "SELECT aggregate_id, array_agg(DISTINCT aggregate_type) FROM events "
        "GROUP BY aggregate_id HAVING count(DISTINCT aggregate_type) > 1 LIMIT %s",
    ),
    (
        "events whose global position comes before the version they follow",
        """SELECT aggregate_id, version FROM (
               SELECT aggregate_id, version, transaction_id, id,
                      lag(transaction_id) OVER w AS previous_transaction, lag(id) OVER w AS previous_id
                 FROM events WINDOW w AS (PARTITION BY aggregate_id ORDER BY version)) ordered
            WHERE (previous_transaction, previous_id) > (transaction_id, id) LIMIT %s""",
    ),
]


class Command(BaseCommand):
    help = (
        "Check that every aggregate's versions are 1..N without gaps and of one type, that the "
        "guard triggers are installed and enabled, and that the global order (transaction, id) "
        "agrees with each aggregate's version order. Exits 1 on any finding."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--show", type=example_count, default=20, help=f"At most this many examples per finding, 1 to {MAX_SHOWN}."
        )

    def handle(self, *args, show, **options):
        findings = self._guards()
        with connection.cursor() as cursor:
            for title, query in CHECKS:
                cursor.execute(query, [show])
                rows = cursor.fetchall()
                findings += [f"{title}: {row}" for row in rows]
                self.stdout.write(f"{title}: {'FOUND' if rows else 'none'}")
        for finding in findings:
            self.stdout.write(finding)
        if findings:
            raise CommandError(f"{len(findings)} findings in the event store.", returncode=1)
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
