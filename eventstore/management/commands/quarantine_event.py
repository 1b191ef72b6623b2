"""quarantine_event: set a forged or broken event aside, as the owner, saying who and why.

The event stays in the log exactly as it is (nobody UPDATEs or DELETEs events);
its id goes into the owner-only `event_quarantine` table. Every replay, load and
projection then skips it: the aggregate continues from its last good event, the
next event a command writes links its chain onto that one, and the integrity
hold the event caused is lifted. docs/operations.md describes the procedure.
"""

from __future__ import annotations

import getpass
from typing import Any

import psycopg
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connection, transaction

from eventstore import signing
from eventstore.models import Event, QuarantinedEvent


class Command(BaseCommand):
    help = (
        "Quarantine one event by its id: replay skips it and its aggregate goes on from the event "
        "before it. Run as the database owner; the reason and who ran it are recorded."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "event_id", type=int, help="The id of the event, as verify_event_store or the page names it."
        )
        parser.add_argument("--reason", required=True, help="Why: kept with the quarantine, for the auditors.")

    def handle(self, *args: Any, event_id: int, reason: str, **options: Any) -> None:
        reason = reason.strip()
        if not reason:
            raise CommandError("Give the reason for the quarantine (--reason); nothing was done.")
        event = Event.objects.filter(id=event_id).first()
        if event is None:
            raise CommandError(f"There is no event {event_id}; nothing was done.")
        if QuarantinedEvent.objects.filter(event_id=event_id).exists():
            raise CommandError(f"Event {event_id} is already quarantined; nothing was done.")
        signed = event.chain_hash is not None and signing.keys().verifies(
            signing.EVENT, bytes(event.chain_hash), event.key_id, bytes(event.mac or b"")
        )
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user")
            role = cursor.fetchone()[0]
        try:
            with transaction.atomic():
                QuarantinedEvent.objects.create(
                    event_id=event.id, aggregate_id=event.aggregate_id, version=event.version, reason=reason,
                    quarantined_by=f"{getpass.getuser()} (database role {role})",
                )  # fmt: skip
        except DatabaseError as error:
            if isinstance(error.__cause__, psycopg.errors.InsufficientPrivilege):
                raise CommandError(
                    f"Only the database owner may quarantine events; role {role} may not. Nothing was done."
                ) from None
            raise
        if signed:
            self.stdout.write(self.style.WARNING(
                f"Event {event.id} carries a valid signature of this application: it was written by a command. "
                "The events after it link onto it, so they will now fail their check."
            ))  # fmt: skip
        self.stdout.write(self.style.SUCCESS(
            f"Event {event.id} ({event.event_type}, version {event.version} of {event.aggregate_type} "
            f"{event.aggregate_id}) is quarantined: replay skips it. Processes that run commands drop "
            "the state they held for the aggregate at its next load."
        ))  # fmt: skip
