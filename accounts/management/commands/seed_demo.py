"""seed_demo: a few hundred accounts with realistic histories, and one demo login per role.

Idempotent: every command it runs carries a fixed idempotency key, so running it
again stores nothing new. Demo passwords are for a laptop, never for a bank.
"""

import random

from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError

from accounts import services
from accounts.domain import DomainError
from accounts.roles import ensure_roles
from eventstore.context import metadata_context, system_actor

DEMO_USERS = {  # username: (password, role)
    "teller": ("teller-demo-2026", "teller"),
    "supervisor": ("supervisor-demo-2026", "supervisor"),
    "auditor": ("auditor-demo-2026", "auditor"),
}
SOURCES = ["cash", "salary", "cheque", "pension", "refund"]
REASONS = ["ATM", "card purchase", "rent", "utilities", "cash withdrawal"]


class Command(BaseCommand):
    help = "Create demo accounts with histories and one demo login per role (safe to run again)."

    def add_arguments(self, parser):
        parser.add_argument("--accounts", type=int, default=300, help="How many accounts (default 300).")
        parser.add_argument("--seed", type=int, default=2026, help="Random seed, so every run makes the same bank.")

    def handle(self, *args, accounts, seed, **options):
        if not 1 <= accounts <= 100_000:
            raise CommandError("--accounts must be between 1 and 100000.")
        self._users()
        done_key = f"seed-demo:{seed}:{accounts}:last"
        with metadata_context(actor=system_actor("seed_demo")):
            if services.already_done([done_key]):
                self.stdout.write("Demo accounts already present; nothing to do.")
            else:
                self._accounts(accounts, seed, done_key)
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

    def _accounts(self, count, seed, done_key):
        from faker import Faker

        rng, fake = random.Random(seed), Faker("en_GB")
        fake.seed_instance(seed)
        key = f"seed-demo:{seed}:{count}"
        opened = []
        for n in range(count):
            account = services.open_account(
                owner=fake.name(), initial_deposit=rng.choice([0, 5_000, 25_000, 100_000, 250_000]),
                currency=rng.choices(["EUR", "GBP", "USD"], weights=[6, 2, 2])[0], idempotency_key=f"{key}:open:{n}",
            )  # fmt: skip
            opened.append(account)
        steps = 0
        for n, account in enumerate(opened):
            for step in range(rng.randint(2, 14)):
                steps += 1
                self._random_command(rng, account, opened, f"{key}:{n}:{step}")
            # The last account takes the final deposit that marks the bank as seeded: it must stay active.
            if rng.random() < 0.04 and account is not opened[-1]:
                self._try(
                    services.freeze,
                    account_id=account.id,
                    reason="suspicious activity",
                    idempotency_key=f"{key}:{n}:freeze",
                )
        services.deposit(account_id=opened[-1].id, amount=100, source="seed complete", idempotency_key=done_key)
        self.stdout.write(f"Opened {count} accounts and ran {steps} commands on them.")

    def _random_command(self, rng, account, opened, key):
        roll = rng.random()
        amount = rng.choice([500, 1_250, 2_000, 4_999, 12_000, 30_000])
        if roll < 0.45:
            self._try(
                services.deposit, account_id=account.id, amount=amount, source=rng.choice(SOURCES), idempotency_key=key
            )
        elif roll < 0.8:
            self._try(
                services.withdraw, account_id=account.id, amount=amount, reason=rng.choice(REASONS), idempotency_key=key
            )
        else:
            other = rng.choice(opened)
            self._try(services.transfer, from_account_id=account.id, to_account_id=other.id,
                      amount=amount, reference=f"invoice {rng.randint(1000, 9999)}", idempotency_key=key)  # fmt: skip

    @staticmethod
    def _try(command, **kwargs):
        """Refusals (insufficient funds, another currency, same account) are part of a real day."""
        try:
            command(**kwargs)
        except DomainError:
            pass
