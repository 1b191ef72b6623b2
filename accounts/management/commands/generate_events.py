"""generate_events: many valid account histories, fast, for benchmarks and demos.

Every history is one the services could have written: each command is decided
by accounts.domain against the account's state (refusals are skipped), then
accounts.bulk writes the events with COPY, signed, a chunk of accounts per
transaction, and applies the inline account read model to them in that same
transaction. Owners get realistic names from several countries (Faker), and each
chunk's histories are spread over the last --days days (two years by default).
The asynchronous read models catch up afterwards (run_projections, or
rebuild_projections --all after a large load).
"""

import datetime
import itertools
import random
import sys
import uuid

from django.core.management.base import BaseCommand, CommandError
from faker import Faker
from tqdm import tqdm

from accounts.bulk import LOCALES, write_histories
from accounts.domain import WAIVED, BankAccount, DomainError
from accounts.domain import transfer as decide_transfer
from eventstore.context import system_actor

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
        parser.add_argument("--days", type=int, default=730, help="Spread the events over this many past days.")
        parser.add_argument("--chunk", type=int, default=1000, help="Accounts per transaction.")
        parser.add_argument("--seed", type=int, default=None, help="Random seed, for a repeatable history.")

    def handle(self, *args, accounts, events, days, chunk, seed, **options):
        if accounts < 1 or events < accounts or days < 1 or chunk < 1:
            raise CommandError("need --accounts >= 1, --events >= --accounts, --days >= 1 and --chunk >= 1.")
        rng = random.Random(seed)
        self.fake = Faker(LOCALES)
        self.fake.seed_instance(seed)
        written = 0
        with tqdm(total=events, unit=" events", unit_scale=True, file=sys.stderr, desc="generate_events") as bar:
            for start in range(0, accounts, chunk):
                size = min(chunk, accounts - start)
                share = events * size // accounts
                done = self._chunk(rng, size, share, days)
                written += done
                bar.total = max(events, written)  # a transfer's two events may pass the goal by one
                bar.set_postfix(accounts=f"{start + size:,}", refresh=False)
                bar.update(done)
        self.stdout.write(
            self.style.SUCCESS(f"wrote {written:,} events for {accounts:,} account{'s' if accounts > 1 else ''}")
        )

    def _chunk(self, rng, size, events, days) -> int:
        now = datetime.datetime.now(datetime.UTC)
        begin = now - datetime.timedelta(days=days)
        # Never after now, and never going back: the guard refuses an event dated before its predecessor.
        step = (now - begin) / (events + size)
        clock = itertools.chain((begin + step * tick for tick in range(events + size)), itertools.repeat(now))
        states, history = [], {}
        for _ in range(size):
            account_id = uuid.uuid4()
            opened = BankAccount.open(account_id, owner=self.fake.name(), currency="EUR",
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
        metadata = {"actor": system_actor("generate_events"), "correlation_id": str(uuid.uuid4())}
        write_histories(
            {account_id: [(event, at, metadata) for event, at in events] for account_id, events in history.items()}
        )
        return total

    def _command(self, rng, index, account, states, history, at) -> int:
        roll, amount = rng.random(), rng.choice([500, 1_250, 4_000, 12_000])
        if roll < 0.15:
            other = rng.randrange(len(states))
            target = states[other]
            sent, received = decide_transfer(
                account, target, transfer_id=uuid.uuid4(), amount=amount, reference="generated", four_eyes=WAIVED
            )
            for position, events in ((index, sent), (other, received)):
                states[position] = states[position].with_events(events)
                history[states[position].id].append((events[0], at))
            return 2
        if roll < 0.6:
            new = account.deposit(amount=amount, source=rng.choice(SOURCES))
        elif roll < 0.98:
            new = account.withdraw(amount=amount, reason=rng.choice(REASONS), four_eyes=WAIVED)
        else:
            new = (
                account.unfreeze(reason="generated", four_eyes=WAIVED)
                if account.status == "frozen"
                else account.freeze(reason="generated")
            )
        states[index] = account.with_events(new)
        history[account.id].append((new[0], at))
        return 1
