"""verify_projections: replay the log and compare every read-model row with it."""

from django.core.management.base import BaseCommand, CommandError

from eventstore import projections


class Command(BaseCommand):
    help = (
        "Replay the log into temporary tables and compare every row of each projection with "
        "what replay gives. Prints each difference; exits 1 on any drift."
    )

    def add_arguments(self, parser):
        parser.add_argument("names", nargs="*", help="Projections to verify (default: all).")
        parser.add_argument("--show", type=int, default=50, help="At most this many differences per table.")

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
