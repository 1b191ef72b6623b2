"""rebuild_projections: rebuild read models from the log while the bank keeps working."""

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from eventstore import projections
from eventstore.context import metadata_context, system_actor


class Command(BaseCommand):
    help = (
        "Rebuild projections into fresh shadow tables from the start of the log, read once for all "
        "of them, while commands keep running; catch up to the live position and swap each in one short transaction. "
        "An interrupted rebuild resumes where it stopped when run again, as does one stopped at "
        "an event it cannot apply, once the projection or the event is fixed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", help="Projections to rebuild.")
        parser.add_argument("--all", action="store_true", help="Rebuild every projection.")
        parser.add_argument("--restart", action="store_true", help="Throw away an interrupted rebuild and start over.")
        parser.add_argument("--chunk", type=int, default=projections.CHUNK, help="Events per committed step.")

    def handle(self, *args: Any, names: list[str], all: bool, restart: bool, chunk: int, **options: Any) -> None:
        if bool(names) == bool(all):
            raise CommandError(
                f"name the projections to rebuild, or give --all ({', '.join(sorted(projections.registry))})."
            )
        if chunk < 1:
            raise CommandError("--chunk must be 1 or more.")
        try:
            chosen = projections.named(names)
        except KeyError as error:
            raise CommandError(error.args[0]) from None
        with metadata_context(actor=system_actor("rebuild_projections")):
            swapped, stops = self._rebuild(chosen, restart, chunk)
        for projection in swapped:
            self.stdout.write(self.style.SUCCESS(f"{projection.name}: rebuilt and swapped in"))
        if stops:
            raise CommandError(
                "; ".join(str(stop) for stop in stops) + " -- fix the projection or the event, then run again to resume"
            )

    def _rebuild(self, chosen: list[projections.Projection], restart: bool,
                 chunk: int) -> tuple[list[projections.Projection], list[projections.ProjectionStopped]]:  # fmt: skip
        """One pass over the log for all of them, with one progress bar."""
        names = ", ".join(projection.name for projection in chosen)
        with tqdm(desc=names, unit=" events", unit_scale=True, file=sys.stderr) as bar:

            def report(progress: projections.Progress) -> None:
                bar.total = progress.total
                bar.update(progress.done - bar.n)

            return projections.rebuild_together(
                chosen, progress=projections.Progress(report=report), restart=restart, chunk=chunk
            )
