"""Writing whole account histories at once, for the owner-run loaders (generate_events, seed_demo).

Every event was decided by accounts.domain against the account's state, as the
services would have decided it; this only writes them fast: COPY into the
events table, each event signed onto its account's chain with the date it is
given, the snapshots the commands would have taken on the way (every
EVENTSTORE_SNAPSHOT_EVERY events), and the inline account read model applied in
the same transaction. It bypasses commands (no lock, no command log), so it is
for an empty or quiet database, run by its owner, never by the web.
"""

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson
from django.db import connection, transaction

from accounts.domain import AGGREGATE_TYPE, BankAccount, Event
from accounts.projections import accounts as account_projection
from eventstore import registry, signing, snapshots
from eventstore.store import StoredEvent

COPY = (
    "COPY events (aggregate_id, aggregate_type, event_type, event_data, metadata, version, created_at, "
    "chain_hash, key_id, mac) FROM STDIN"
)
# Where the loaders' owners come from: names of several countries, accents included.
LOCALES = ["en_GB", "fr_FR", "de_DE", "es_ES", "pt_BR", "sv_SE", "pl_PL", "it_IT"]

# An account's history: each event with its moment (never before the one before it) and its metadata.
History = list[tuple[Event, datetime, dict[str, Any]]]


def write_histories(histories: Mapping[uuid.UUID, History]) -> int:
    """Write new accounts' whole histories in one transaction; return how many events were written."""
    keys, stored, due = signing.keys(), [], []
    account, every = registry.aggregate(AGGREGATE_TYPE), snapshots.every(registry.aggregate(AGGREGATE_TYPE))
    texts: dict[int, tuple[dict[str, Any], str]] = {}  # metadata shared by many events is written out once
    with transaction.atomic():
        connection.ensure_connection()
        with connection.connection.cursor() as cursor, cursor.copy(COPY) as copy:
            for account_id, events in histories.items():
                chain, state, unfolded = signing.GENESIS, BankAccount(account_id), []
                for version, (event, at, metadata) in enumerate(events, start=1):
                    data = event.to_data()
                    chain, key_id, mac = signing.sign_event(
                        keys, chain, account_id, AGGREGATE_TYPE, version, event.event_type, data, metadata, at
                    )
                    if every:
                        unfolded.append((version, event.event_type, data))
                        if version % every == 0:
                            state = BankAccount.from_events(account_id, unfolded, start=state)
                            due.append((state, chain))
                            unfolded = []
                    if id(metadata) not in texts:
                        texts[id(metadata)] = (metadata, orjson.dumps(metadata).decode())
                    # The domain's payloads hold text and integers only, which orjson writes as json does.
                    copy.write_row((account_id, AGGREGATE_TYPE, event.event_type, orjson.dumps(data).decode(),
                                    texts[id(metadata)][1], version, at, chain, key_id, mac))  # fmt: skip
                    stored.append(
                        StoredEvent(0, account_id, AGGREGATE_TYPE, event.event_type, data, {}, version, at, 0)
                    )
        account_projection.apply(stored, account_projection.live())
        for state, chain in due:
            snapshots.save(account, state, chain)
    return len(stored)
