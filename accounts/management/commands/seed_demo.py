"""seed_demo: a demo bank of a few hundred accounts with three months of history, and one demo login per role.

The histories are decided by accounts.domain as the services would decide them,
dated over the last 90 days (so past views, the chart and monthly statements show
something), and written by accounts.bulk: deposits and withdrawals, transfers
between demo accounts, a few large transactions, frozen and closed accounts with
their reasons. Owners' names come from several countries, accents included.

Idempotent: the account ids follow from the seed, so running it again finds them
and writes nothing. Demo passwords are for a laptop, never for a bank.
"""

import datetime
import random
import uuid

from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from faker import Faker

from accounts.bulk import LOCALES, History, write_histories
from accounts.domain import ACTIVE, FROZEN, WAIVED, BankAccount, DomainError, Event
from accounts.domain import transfer as decide_transfer
from accounts.models import Account
from accounts.roles import ensure_roles

DEMO_USERS = {  # username: (password, role)
    "teller": ("teller-demo-2026", "teller"),
    "supervisor": ("supervisor-demo-2026", "supervisor"),
    "auditor": ("auditor-demo-2026", "auditor"),
}
SOURCES = ["cash", "salary", "cheque", "pension", "refund"]
REASONS = ["ATM", "card purchase", "rent", "utilities", "cash withdrawal"]
FREEZES = ["suspected card fraud, ticket 4411", "court order 2026/118", "identity documents expired",
           "unusual transfers reported by the customer"]  # fmt: skip
CLOSES = ["customer moved abroad", "customer's request", "estate settled", "duplicate account"]

DAYS = 90
NAMESPACE = uuid.UUID("5eed0000-2026-4000-8000-000000000000")  # demo account ids: uuid5 of the seed and a number


class Command(BaseCommand):
    help = "Create demo accounts with histories and one demo login per role (safe to run again)."

    def add_arguments(self, parser):
        parser.add_argument("--accounts", type=int, default=300, help="How many accounts (default 300).")
        parser.add_argument("--seed", type=int, default=2026, help="Random seed, so every run makes the same bank.")

    def handle(self, *args, accounts, seed, **options):
        if not 1 <= accounts <= 100_000:
            raise CommandError("--accounts must be between 1 and 100000.")
        self._users()
        ids = [uuid.uuid5(NAMESPACE, f"{seed}:{n}") for n in range(accounts)]
        if Account.objects.filter(account_id__in=ids[:1]).exists():
            self.stdout.write("Demo accounts already present; nothing to do.")
        else:
            written = write_histories(DemoBank(ids, random.Random(seed), seed).histories())
            self.stdout.write(f"Opened {accounts} accounts with {written} events over the last {DAYS} days.")
        self.stdout.write(self.style.SUCCESS("Demo logins (for this laptop only):"))
        for username, (password, role) in DEMO_USERS.items():
            self.stdout.write(f"  {role:<11} user {username:<11} password {password}")

    def _users(self):
        ensure_roles()
        for username, (password, role) in DEMO_USERS.items():
            user, created = User.objects.get_or_create(username=username, defaults={"is_staff": True})
            if created:
                user.set_password(password)
                user.save()
            user.groups.add(Group.objects.get(name=role))


class DemoBank:
    """Three months of a small bank, decided command by command by the domain, each at its moment."""

    def __init__(self, ids: list[uuid.UUID], rng: random.Random, seed: int) -> None:
        self.ids, self.rng = ids, rng
        self.fake = Faker(LOCALES)
        self.fake.seed_instance(seed)
        self.states: dict[uuid.UUID, BankAccount] = {}
        self.history: dict[uuid.UUID, History] = {}

    def histories(self) -> dict[uuid.UUID, History]:
        ticks = len(self.ids) * 9
        now = timezone.now()
        step = datetime.timedelta(days=DAYS) / ticks
        unopened = list(self.ids)
        for tick in range(ticks):
            at = now - datetime.timedelta(days=DAYS) + step * tick
            if unopened and (not self.states or self.rng.random() < 0.3 or len(unopened) >= ticks - tick):
                self._open(unopened.pop(0), at)
            else:
                self._try(self._command, self.rng.choice(list(self.states)), at)
        self._make_sure_some_are(FROZEN, now - step)
        self._make_sure_some_are("closed", now - step / 2)
        return self.history

    def _record(self, account_id: uuid.UUID, events: list[Event], at: datetime.datetime, actor: str,
                correlation: str | None = None) -> None:  # fmt: skip
        metadata = {"actor": actor, "correlation_id": correlation or str(uuid.UUID(int=self.rng.getrandbits(128)))}
        self.states[account_id] = self.states[account_id].with_events(events)
        self.history[account_id] += [(event, at, metadata) for event in events]

    def _open(self, account_id: uuid.UUID, at: datetime.datetime) -> None:
        currency = self.rng.choices(["EUR", "GBP", "USD"], weights=[6, 2, 2])[0]
        opened = BankAccount.open(account_id, owner=self.fake.name(), currency=currency,
                                  initial_deposit=self.rng.choice([0, 5_000, 25_000, 100_000, 250_000]))  # fmt: skip
        self.states[account_id], self.history[account_id] = BankAccount(account_id), []
        self._record(account_id, opened, at, "teller")

    def _command(self, account_id: uuid.UUID, at: datetime.datetime) -> None:
        account, roll = self.states[account_id], self.rng.random()
        amount = self.rng.choice([500, 1_250, 2_000, 4_999, 12_000, 30_000])
        if roll < 0.03:  # a large one: at or above the review threshold
            large = self.rng.choice([1_500_000, 2_500_000, 4_800_000])
            self._record(account_id, account.deposit(amount=large, source="property sale"), at, "supervisor")
        elif roll < 0.45:
            self._record(account_id, account.deposit(amount=amount, source=self.rng.choice(SOURCES)), at, "teller")
        elif roll < 0.78:
            self._record(
                account_id,
                account.withdraw(amount=amount, reason=self.rng.choice(REASONS), four_eyes=WAIVED),
                at,
                "teller",
            )
        else:
            others = [s for s in self.states.values() if s.currency == account.currency and s.id != account_id]
            if not others:
                return
            target = self.rng.choice(others)
            reference, transfer_id = f"invoice {self.rng.randint(1000, 9999)}", uuid.UUID(int=self.rng.getrandbits(128))
            sent, received = decide_transfer(
                account, target, transfer_id=transfer_id, amount=amount, reference=reference, four_eyes=WAIVED
            )
            correlation = str(uuid.UUID(int=self.rng.getrandbits(128)))
            self._record(account_id, sent, at, "teller", correlation)
            self._record(target.id, received, at, "teller", correlation)

    def _make_sure_some_are(self, status: str, at: datetime.datetime) -> None:
        """About one account in twenty-five frozen, and as many closed (at least one of each in a bank of six)."""
        wanted = max(1, len(self.ids) // 25) if len(self.ids) >= 6 else 0
        active = [s for s in self.states.values() if s.status == ACTIVE]
        for account in self.rng.sample(active, min(wanted, len(active))):
            if status == FROZEN:
                events = account.freeze(reason=self.rng.choice(FREEZES))
            else:
                emptied = (
                    account.withdraw(amount=account.balance, reason="closing balance paid out", four_eyes=WAIVED)
                    if account.balance
                    else []
                )
                events = emptied + account.with_events(emptied).close(reason=self.rng.choice(CLOSES), four_eyes=WAIVED)
            self._record(account.id, events, at, "supervisor")

    @staticmethod
    def _try(command, *args) -> None:
        """Refusals (insufficient funds, a frozen account) are part of a real day: nothing is recorded."""
        try:
            command(*args)
        except DomainError:
            pass
