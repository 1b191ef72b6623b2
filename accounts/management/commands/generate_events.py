"""generate_events: many valid account histories, fast, for benchmarks and demos.

Every history is one the services could have written: each command is decided
by accounts.domain against the account's state (refusals are skipped), then the
events go in with COPY, a chunk of accounts per transaction, and the inline
account read model is applied to them in that same transaction.
"""

import datetime
import itertools
import json
import random
import uuid

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from accounts.domain import AGGREGATE_TYPE, BankAccount, DomainError
from accounts.domain import transfer as decide_transfer
from accounts.projections import accounts as account_projection
from eventstore import signing
from eventstore.context import system_actor
from eventstore.store import StoredEvent

COPY = (
    "COPY events (aggregate_id, aggregate_type, event_type, event_data, metadata, version, created_at, "
    "chain_hash, key_id, mac) FROM STDIN"
)
SOURCES, REASONS = ["cash", "salary", "cheque", "refund"], ["ATM", "card", "rent", "bills"]


class Command(BaseCommand):
    help = (
        "Write valid random histories for N accounts, about M events in all, with COPY. "
        "Events are decided by the domain's rules and spread over the last --days days."
    )

    def add_arguments(self, parser):
        parser.add_argument("--accounts", type=int, required=True, help="How many accounts to open.")
        parser.add_argument(
            "--events", type=int, required=True, help="About how many events in all (at least one per account)."
        )
        parser.add_argument("--days", type=int, default=30, help="Spread the events over this many past days.")
        parser.add_argument("--chunk", type=int, default=1000, help="Accounts per transaction.")
        parser.add_argument("--seed", type=int, default=None, help="Random seed, for a repeatable history.")

    def handle(self, *args, accounts, events, days, chunk, seed, **options):
        if accounts < 1 or events < accounts or days < 1 or chunk < 1:
            raise CommandError("need --accounts >= 1, --events >= --accounts, --days >= 1 and --chunk >= 1.")
        rng = random.Random(seed)
        written = 0
        for start in range(0, accounts, chunk):
            size = min(chunk, accounts - start)
            share = events * size // accounts
            written += self._chunk(rng, size, share, days)
            self.stdout.write(f"{start + size} accounts, {written} events")
        self.stdout.write(self.style.SUCCESS(f"wrote {written} events for {accounts} accounts"))

    def _chunk(self, rng, size, events, days) -> int:
        now = datetime.datetime.now(datetime.UTC)
        begin = now - datetime.timedelta(days=days)
        # Never after now, and never going back: the guard refuses an event dated before its predecessor.
        step = (now - begin) / (events + size)
        clock = itertools.chain((begin + step * tick for tick in range(events + size)), itertools.repeat(now))
        states, history = [], {}
        for _ in range(size):
            account_id = uuid.uuid4()
            opened = BankAccount.open(account_id, owner=f"Generated {str(account_id)[:8]}", currency="EUR",
                                      initial_deposit=rng.choice([0, 10_000, 50_000]))  # fmt: skip
            states.append(BankAccount(account_id).with_events(opened))
            history[account_id] = [(opened[0], next(clock))]
        total = size
        while total < events:
            index = rng.randrange(size)
            account = states[index]
            at = next(clock, now)
            try:
                total += self._command(rng, index, account, states, history, at)
            except DomainError:
                continue
        self._write(history)
        return total

    def _command(self, rng, index, account, states, history, at) -> int:
        roll, amount = rng.random(), rng.choice([500, 1_250, 4_000, 12_000])
        if roll < 0.15:
            other = rng.randrange(len(states))
            target = states[other]
            sent, received = decide_transfer(
                account, target, transfer_id=uuid.uuid4(), amount=amount, reference="generated"
            )
            for position, events in ((index, sent), (other, received)):
                states[position] = states[position].with_events(events)
                history[states[position].id].append((events[0], at))
            return 2
        if roll < 0.6:
            new = account.deposit(amount=amount, source=rng.choice(SOURCES))
        elif roll < 0.98:
            new = account.withdraw(amount=amount, reason=rng.choice(REASONS))
        else:
            new = (
                account.unfreeze(reason="generated")
                if account.status == "frozen"
                else account.freeze(reason="generated")
            )
        states[index] = account.with_events(new)
        history[account.id].append((new[0], at))
        return 1

    def _write(self, history) -> None:
        metadata = {"actor": system_actor("generate_events"), "correlation_id": str(uuid.uuid4())}
        metadata_json, keys = json.dumps(metadata), signing.keys()
        stored = []
        with transaction.atomic():
            connection.ensure_connection()
            with connection.connection.cursor() as cursor, cursor.copy(COPY) as copy:
                for account_id, events in history.items():
                    chain = signing.GENESIS
                    for version, (event, at) in enumerate(events, start=1):
                        data = event.to_data()
                        chain, key_id, mac = signing.sign_event(
                            keys, chain, account_id, AGGREGATE_TYPE, version, event.event_type, data, metadata, at
                        )
                        copy.write_row((account_id, AGGREGATE_TYPE, event.event_type, json.dumps(data),
                                        metadata_json, version, at, chain, key_id, mac))  # fmt: skip
                        stored.append(
                            StoredEvent(0, account_id, AGGREGATE_TYPE, event.event_type, data, {}, version, at, 0)
                        )
            account_projection.apply(stored, account_projection.live())
