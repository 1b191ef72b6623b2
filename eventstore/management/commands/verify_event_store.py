"""verify_event_store: check everything the log promises, and record what was found.

The guard triggers; versions 1..N; one type per aggregate; the global order and
created_at against version order; every chain link and MAC and the seal; a
replay of every aggregate by its rules (for the bank: no balance below zero);
the apps' own checks (every transfer sent is received once); every event
written with an idempotency key has its command-log row; every snapshot's MAC,
and its state against a replay. Quarantined events are listed. The findings go
to `integrity_run` and `integrity_finding`, which the dashboard reads.
"""

from __future__ import annotations

import getpass
import itertools
import json
import re
from typing import Any

import psycopg
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction
from django.utils import timezone

from eventstore import digest as digests
from eventstore import registry, verification
from eventstore.integrity import Row, snapshot_verifies
from eventstore.management.commands.verify_projections import MAX_SHOWN, counted, example_count
from eventstore.models import IntegrityFinding, IntegrityRun, QuarantinedEvent
from eventstore.upcasting import upcasters
from eventstore.verification import Finding

GUARDS = {"events_no_update", "events_no_delete", "events_no_truncate", "events_append_guard"}

# Every snapshot, with the events up to its version for the latest of each aggregate (an older one,
# taken by a command from a checked state, is checked by its MAC: replaying each would cost the
# history once per snapshot). One aggregate after another.
SNAPSHOTS_WITH_EVENTS = """
SELECT s.aggregate_id, s.aggregate_type, s.version, s.schema_version, s.state::text, s.chain_hash, s.key_id,
       s.mac, e.event_type, e.event_data::text, e.version
  FROM snapshots s LEFT JOIN events e ON e.aggregate_id = s.aggregate_id AND e.version <= s.version
       AND NOT EXISTS (SELECT 1 FROM snapshots n WHERE n.aggregate_id = s.aggregate_id AND n.version > s.version)
       AND NOT EXISTS (SELECT 1 FROM event_quarantine q WHERE q.event_id = e.id)
 ORDER BY s.aggregate_id, s.version, e.version
"""
SNAPSHOT_CHECK = "snapshots that differ from a replay of their events or are not signed"
DIGEST = "days that no longer match their digest"
HORIZON = """
SELECT COALESCE(max(transaction_id)::text, '0'), COALESCE(max(id), 0) FROM events
 WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
"""


def position(text: str) -> tuple[int, int]:
    """--since's value: TRANSACTION:EVENT, as a previous run printed it."""
    match = re.fullmatch(r"(\d{1,20}):(\d{1,19})", text.strip())
    if match is None or int(match[1]) >= 2**64 or int(match[2]) >= 2**63:  # xid8, and the bigint event id
        raise ValueError(f"--since takes TRANSACTION:EVENT as a run prints it (say 1234:56789), not {text!r}")
    return int(match[1]), int(match[2])


class Command(BaseCommand):
    help = (
        "Check the log: guard triggers, versions 1..N, one type per aggregate, global order and created_at, "
        "every chain link and MAC and the seal, a replay of every aggregate by its rules, the apps' own "
        "checks, idempotency keys against the command log, and every snapshot. Records the findings for "
        "the dashboard. Exits 1 on any finding."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--show", type=example_count, default=20,
            help=f"At most this many examples per check, 0 to {MAX_SHOWN}; all are counted.",
        )  # fmt: skip
        parser.add_argument(
            "--digest", action="append", default=[], metavar="FILE",
            help="Also prove the log still matches a digest log_digest wrote (repeat for several days).",
        )  # fmt: skip
        parser.add_argument(
            "--since", type=str, default=None, metavar="TRANSACTION:EVENT",
            help="Check only the aggregates written after this position (a previous run prints where it ended).",
        )  # fmt: skip

    def handle(self, *args: Any, show: int, since: str | None, digest: list[str], **options: Any) -> None:
        try:
            after = None if since is None else position(since)
            kept = [digests.load(path) for path in digest]
        except (OSError, ValueError, KeyError) as error:
            raise CommandError(f"{error}. Nothing was checked.") from None
        outer = connection.in_atomic_block
        with transaction.atomic():
            connection.ensure_connection()
            with connection.cursor() as cursor:
                if not outer:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # one view of the whole log
                cursor.execute(HORIZON)
                up_to = tuple(int(value) for value in cursor.fetchone())
            findings = self._guards()
            findings += list(verification.sql_findings(after))
            findings += list(verification.history_findings(after))
            findings += self._snapshots()
            findings += [Finding(DIGEST, difference) for day in kept for difference in digests.differences(day)]
        self._report(findings, show)
        self._quarantined()
        self._record(findings, after, up_to)
        self.stdout.write(f"checked up to {up_to[0]}:{up_to[1]} (next time: --since {up_to[0]}:{up_to[1]})")
        if findings:
            raise CommandError(f"{counted(len(findings), 'finding')} in the event store.", returncode=1)
        self.stdout.write(self.style.SUCCESS("event store ok"))

    def _report(self, findings: list[Finding], show: int) -> None:
        titles = ["guard triggers"] + [title for title, _ in verification.SQL_CHECKS]
        titles += [verification.SIGNATURES, verification.REPLAY, SNAPSHOT_CHECK, DIGEST]
        for title in titles:
            found = [finding for finding in findings if finding.check == title]
            self.stdout.write(f"{title}: {f'{len(found)} FOUND' if found else 'none'}")
            for finding in found[:show]:
                self.stdout.write(str(finding))

    def _quarantined(self) -> None:
        quarantined = list(QuarantinedEvent.objects.order_by("quarantined_at"))
        self.stdout.write(f"quarantined events: {len(quarantined)}")
        for row in quarantined:
            self.stdout.write(
                f"  event {row.event_id}, version {row.version} of {row.aggregate_id}: {row.reason} "
                f"({row.quarantined_by}, {row.quarantined_at:%Y-%m-%d %H:%M} UTC)"
            )

    def _record(self, findings: list[Finding], after: tuple[int, int] | None, up_to: tuple[int, ...]) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user")
            role = cursor.fetchone()[0]
        try:
            with transaction.atomic():
                run = IntegrityRun.objects.create(
                    since_transaction=(after or (0, 0))[0], since_event=(after or (0, 0))[1],
                    up_to_transaction=up_to[0], up_to_event=up_to[1], findings=len(findings),
                    run_by=f"{getpass.getuser()} (database role {role})", finished_at=timezone.now(),
                )  # fmt: skip
                IntegrityFinding.objects.bulk_create(
                    IntegrityFinding(run=run, title=f.check, aggregate_id=f.aggregate_id, version=f.version,
                                     event_id=f.event_id, detail=f.detail[:1000])
                    for f in findings
                )  # fmt: skip
        except psycopg.errors.InsufficientPrivilege:
            self.stdout.write(self.style.WARNING(f"findings not recorded: role {role} may not write them"))

    def _guards(self) -> list[Finding]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'events'::regclass AND NOT tgisinternal"
            )
            installed = dict(cursor.fetchall())
        missing = sorted(GUARDS - set(installed))
        disabled = sorted(name for name in GUARDS & set(installed) if installed[name] == "D")
        return [Finding("guard triggers", f"missing: {name}") for name in missing] + [
            Finding("guard triggers", f"disabled: {name}") for name in disabled
        ]

    def _snapshots(self) -> list[Finding]:
        """Check each snapshot's MAC, and its state against a replay of the events up to its version.

        A snapshot is a cache anyone holding the application's role can write: loads
        ignore one that fails, and this reports it. One of an older state schema is
        ignored by every load, so it is skipped here.
        """
        problems: list[Finding] = []
        with psycopg.ServerCursor(connection.connection, "verify_snapshots") as cursor:
            cursor.itersize = 2_000
            cursor.execute(SNAPSHOTS_WITH_EVENTS)
            for key, rows in itertools.groupby(cursor, key=lambda row: row[:8]):
                aggregate_id, aggregate_type, version, schema, state_text, chain_hash, key_id, mac = key
                known = registry.aggregates.get(aggregate_type)
                if known is None or schema != known.state_schema:
                    continue
                state = json.loads(state_text)
                signature = Row(None, None, None, None, version, None, None, None, chain_hash, key_id, mac, None)
                if not snapshot_verifies(aggregate_id, schema, signature, state):
                    problems.append(Finding(SNAPSHOT_CHECK, "it is not signed by this application", aggregate_id,
                                            version))  # fmt: skip
                    continue
                events = [(row[10], row[8], upcasters.upcast(row[8], json.loads(row[9]))) for row in rows if row[8]]
                if not events and version:  # an older snapshot: its MAC was its check
                    continue
                try:
                    replayed = known.to_snapshot(known.fold(aggregate_id, events, None))
                except Exception as error:  # a finding about the log, whatever the aggregate's code raises
                    problems.append(Finding(SNAPSHOT_CHECK, f"its events cannot be replayed ({error})", aggregate_id,
                                            version))  # fmt: skip
                    continue
                if replayed != state:
                    problems.append(Finding(SNAPSHOT_CHECK, f"{state} but replay gives {replayed}", aggregate_id,
                                            version))  # fmt: skip
        return problems
