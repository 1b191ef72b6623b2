"""seal_event_store: vouch, once, for the events stored before signing existed.

Run as the owner, once, after migrating a database that has history, before the
application takes commands again: until then a load meets unsigned events and
holds the aggregate. For each aggregate it works out the chain hash of its
unsigned events (in version order, the quarantined ones skipped) and records
that chain head with a MAC in `event_seal`. No event is updated. Later events
link onto that head and carry their own MAC.

It refuses to run a second time: a seal written later would vouch for whatever
unsigned rows someone holding the application's role had added since.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import psycopg
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from eventstore import signing
from eventstore.context import system_actor
from eventstore.integrity import seal_content
from eventstore.models import Seal

HISTORY = """
SELECT e.aggregate_id, e.aggregate_type, e.version, e.event_type, e.event_data::text, e.metadata::text,
       e.created_at, e.chain_hash IS NOT NULL
  FROM events e
 WHERE NOT EXISTS (SELECT 1 FROM event_quarantine q WHERE q.event_id = e.id)
 ORDER BY e.aggregate_id, e.version
"""
BATCH = 5_000


class Command(BaseCommand):
    help = (
        "Seal the events stored before signing existed: record each aggregate's chain head, signed, "
        "so that loads and verify_event_store can check them. Run once, as the database owner."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        sealed = Seal.objects.order_by("sealed_at").first()
        if sealed is not None:
            raise CommandError(
                f"The log was already sealed on {sealed.sealed_at:%Y-%m-%d %H:%M} UTC by {sealed.sealed_by}; "
                "a second seal would vouch for rows added since. Nothing was done."
            )
        keys, by = signing.keys(), system_actor("seal_event_store")
        heads, events, problems = 0, 0, list[str]()
        try:
            with transaction.atomic():
                connection.ensure_connection()
                with psycopg.ServerCursor(connection.connection, "seal_history") as cursor:
                    cursor.itersize = BATCH
                    cursor.execute(HISTORY)
                    batch: list[tuple[Any, ...]] = []
                    for aggregate_id, rows in itertools.groupby(cursor, key=lambda row: row[0]):
                        head, counted = self._head(aggregate_id, list(rows), problems)
                        events += counted
                        if head is None:
                            continue
                        aggregate_type, version, chain_hash = head
                        key_id, mac = keys.sign(signing.SEAL, seal_content(aggregate_id, aggregate_type, version,
                                                                           chain_hash))  # fmt: skip
                        batch.append((aggregate_id, aggregate_type, version, chain_hash, key_id, mac, by))
                        if len(batch) >= BATCH:
                            heads += self._write(batch)
                    heads += self._write(batch)
        except psycopg.errors.InsufficientPrivilege as error:
            raise CommandError(f"Run seal_event_store as the database owner: {error}. Nothing was done.") from None
        for problem in problems:
            self.stdout.write(self.style.WARNING(problem))
        self.stdout.write(self.style.SUCCESS(f"sealed {events} unsigned events of {heads} aggregates"))

    @staticmethod
    def _head(aggregate_id: Any, rows: list[tuple[Any, ...]],
              problems: list[str]) -> tuple[tuple[str, int, bytes] | None, int]:  # fmt: skip
        """(type, version, chain hash) of the aggregate's unsigned events, and how many there are."""
        chain, head, counted, signed = signing.GENESIS, None, 0, False
        for _, aggregate_type, version, event_type, data, metadata, created_at, is_signed in rows:
            if is_signed:
                signed = True
                continue
            if signed:
                problems.append(f"{aggregate_id} version {version}: unsigned after signed events; not sealed")
                continue
            metadata = None if metadata is None else json.loads(metadata)
            try:
                content = signing.event_content(aggregate_id, aggregate_type, version, event_type, json.loads(data),
                                                metadata, created_at)  # fmt: skip
            except signing.UnsignableValue as error:
                problems.append(f"{aggregate_id} version {version}: cannot be sealed ({error}); sealed up to before it")
                break
            chain, head, counted = signing.link(chain, content), (aggregate_type, version), counted + 1
        return (None if head is None else (head[0], head[1], chain)), counted

    @staticmethod
    def _write(batch: list[tuple[Any, ...]]) -> int:
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO event_seal (aggregate_id, aggregate_type, version, chain_hash, key_id, mac, sealed_by, "
                "sealed_at) VALUES (%s, %s, %s, %s, %s, %s, %s, now())",
                batch,
            )
        written = len(batch)
        batch.clear()
        return written
