"""verify_projections: replay the log and compare every read-model row with it."""

import argparse
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connection

from eventstore import projections

MAX_SHOWN = 2**31 - 1


def example_count(text: str) -> int:
    """--show's value, for verify_projections and verify_event_store: how many examples to print.

    0 prints none; findings are counted all the same. At most MAX_SHOWN, well
    inside PostgreSQL's bigint, past which the LIMIT fails.
    """
    try:
        count = int(text)
    except ValueError:
        count = None
    if count is None or not 0 <= count <= MAX_SHOWN:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to {MAX_SHOWN}, not {text!r}.")
    return count


def counted(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


class Command(BaseCommand):
    help = (
        "Replay the log into temporary tables and compare every row of each projection with "
        "what replay gives. Prints each event replay cannot apply and each difference; exits 1 on any."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", help="Projections to verify (default: all).")
        parser.add_argument(
            "--show", type=example_count, default=50,
            help=f"At most this many examples of each kind per table, 0 to {MAX_SHOWN}; all are counted.",
        )  # fmt: skip

    def handle(self, *args: Any, names: list[str], show: int, **options: Any) -> None:
        try:
            chosen = projections.named(names)
        except KeyError as error:
            raise CommandError(error.args[0]) from None
        rows = events = 0
        _ask_for_temp_buffers(settings.EVENTSTORE_VERIFY_TEMP_BUFFERS)
        findings_of = projections.verify_together(chosen, limit=show)  # one replay of the log for all of them
        for projection in chosen:
            findings = findings_of[projection.name]
            stops = [finding for finding in findings if isinstance(finding, projections.ProjectionStopped)]
            drifts = [finding for finding in findings if isinstance(finding, projections.Drift)]
            events += len(stops)
            rows += findings.total - len(stops)
            for stop in stops[:show]:
                self.stdout.write(str(stop))
            for drift in drifts:
                what = "missing from the table" if drift.kind == "missing" else "in the table, not in replay"
                self.stdout.write(f"{projection.name}: {drift.table}: {what}: {drift.row}")
            self.stdout.write(f"{projection.name}: {'DRIFT' if findings.total else 'ok'}")
        found = (
            [f"{counted(rows, 'row')} {'differs' if rows == 1 else 'differ'} from a replay of the log"] if rows else []
        )
        found += [f"{counted(events, 'event')} could not be applied"] if events else []
        if found:
            raise CommandError("; ".join(found) + ".", returncode=1)


def _ask_for_temp_buffers(size: str) -> None:
    """Let this session's temporary tables, which replay writes, grow to `size` in the server's memory.

    At the default (8 MB) a replay of millions of events sends its tables back and forth to the
    operating system: at 10,000,000 events, verification took 319 s instead of 281 s. The server
    allows the change only before a session's first temporary table; a session past that (a test's,
    say) keeps the size it has.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_my_temp_schema() = 0")
        if not cursor.fetchone()[0]:
            return
        try:
            cursor.execute("SELECT set_config('temp_buffers', %s, false)", [size])
        except DatabaseError as error:
            refused = f"EVENTSTORE_VERIFY_TEMP_BUFFERS is {size!r}, which the server refuses: {error}"
            raise CommandError(refused) from None
