"""log_digest: write one day's chain heads and their root hash, for the bank to keep outside the database."""

from __future__ import annotations

import datetime
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from eventstore import digest


def day(text: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--date takes a day as YYYY-MM-DD (UTC), not {text!r}") from None


class Command(BaseCommand):
    help = (
        "Write the chain head of every aggregate written on a day (UTC) and one root hash over them, as JSON. "
        "Keep it where nobody can change it; verify_event_store --digest FILE proves the log still matches."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--date", required=True, help="The day, YYYY-MM-DD in UTC (yesterday, once it is over).")
        parser.add_argument("--out", default=None, help="Write to this file instead of standard output.")

    def handle(self, *args: Any, date: str, out: str | None, **options: Any) -> None:
        try:
            kept = digest.make(day(date))
        except ValueError as error:
            raise CommandError(str(error)) from None
        text = json.dumps(kept, indent=1) + "\n"
        if out is None:
            self.stdout.write(text, ending="")
            return
        try:
            with open(out, "x", encoding="utf-8") as file:  # never overwrite a digest already kept
                file.write(text)
        except FileExistsError:
            raise CommandError(f"{out} exists: a digest is never overwritten. Nothing was written.") from None
        self.stderr.write(f"{date}: {kept['aggregates']} aggregates, root {kept['root']}, written to {out}")
