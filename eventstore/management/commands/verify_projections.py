"""verify_projections: replay the log and compare every read-model row with it."""

import argparse

from django.core.management.base import BaseCommand, CommandError

from eventstore import projections

MAX_SHOWN = 2**31 - 1


def example_count(text: str) -> int:
    """--show's value, for verify_projections and verify_event_store.

    At least 1: the examples fetched are also how a finding is found, so 0 would
    report none. At most MAX_SHOWN, well inside PostgreSQL's bigint, past which the LIMIT fails.
    """
    try:
        count = int(text)
    except ValueError:
        count = None
    if count is None or not 1 <= count <= MAX_SHOWN:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_SHOWN}, not {text!r}.")
    return count


class Command(BaseCommand):
    help = (
        "Replay the log into temporary tables and compare every row of each projection with "
        "what replay gives. Prints each difference; exits 1 on any drift."
    )

    def add_arguments(self, parser):
        parser.add_argument("names", nargs="*", help="Projections to verify (default: all).")
        parser.add_argument(
            "--show", type=example_count, default=50, help=f"At most this many differences per table, 1 to {MAX_SHOWN}."
        )

    def handle(self, *args, names, show, **options):
        try:
            chosen = projections.named(names)
        except KeyError as error:
            raise CommandError(error.args[0]) from None
        drifted = 0
        for projection in chosen:
            drifts = projections.verify(projection, limit=show)
            drifted += len(drifts)
            for drift in drifts:
                what = "missing from the table" if drift.kind == "missing" else "in the table, not in replay"
                self.stdout.write(f"{projection.name}: {drift.table}: {what}: {drift.row}")
            self.stdout.write(f"{projection.name}: {'DRIFT' if drifts else 'ok'}")
        if drifted:
            raise CommandError(f"{drifted} rows differ from a replay of the log.", returncode=1)
