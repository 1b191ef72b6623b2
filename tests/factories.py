"""Factories for accounts, transfers and staff.

Accounts are made the way the bank makes them. `create()` (and a plain call, the
default strategy) runs the services, so the events are stored; `build()` lets the
domain's rules decide the same commands in memory and stores nothing. Both give
an `accounts.domain.BankAccount` in the same state, apart from its id:

    AccountFactory.build()                      # active, 1,000.00 EUR, version 1, nothing stored
    AccountFactory(initial_deposit=0)           # stored: opened with nothing in it
    AccountFactory(frozen=True)                 # stored: opened, then frozen (version 2)
    AccountFactory(closed=True)                 # stored: opened, emptied, closed (version 3)
    AccountFactory(with_history=5)              # stored: opened, then 5 commands (version 6)
    AccountFactory.build(with_history=4, frozen=True)   # version 6, frozen, nothing stored
    payer, payee = TransferPairFactory(amount=2_500)    # stored: two accounts and a transfer

A command that waits for a second person (a close, an unfreeze, a large withdrawal or
transfer) is made as the bank makes it: asked for by one member of staff and approved by
another (`approved`).
"""

import uuid
from typing import NamedTuple

import factory
from django.conf import settings

from accounts import domain, services
from accounts.approvals import ApprovalPending
from accounts.domain import ACTIVE, CLOSED, FROZEN, WAIVED, BankAccount
from eventstore import context

PASSWORD = "correct horse battery staple"  # every UserFactory member of staff's


def approved(command, *, maker="maker", checker="checker", **arguments):
    """Run a service command; if it waits for a second person, approve it as `checker`.
    Returns what the command returns once it has run (an account, or a transfer's two)."""
    with context.metadata_context(actor=maker):
        try:
            return getattr(services, command)(**arguments)
        except ApprovalPending as pending:
            request = pending.request
    with context.metadata_context(actor=checker):
        done = services.approve(request_id=request.id)
    assert done.state == "approved", done.outcome
    states = [services.get_account(account_id) for account_id in request.account_ids]
    return tuple(states) if command == "transfer" else states[0]


class AccountFactory(factory.Factory):
    """A bank account, as its BankAccount state after the commands the declarations ask for.

    `initial_deposit` is the opening deposit in minor units. `with_history=N` adds N
    commands after the opening: deposits of `step`, alternating with withdrawals of
    `step`, so the account ends at version N + 1 holding its opening deposit (plus
    `step` when N is odd). `status` is where the account ends, after its history: the
    `frozen` trait freezes it, the `closed` trait withdraws whatever it holds and then
    closes it. Each command adds one version.
    """

    class Meta:
        model = BankAccount

    class Params:
        frozen = factory.Trait(status=FROZEN)
        closed = factory.Trait(status=CLOSED)

    owner = factory.Faker("name")
    currency = "EUR"
    initial_deposit = 100_000
    with_history = 0
    step = 1_000
    status = ACTIVE

    @staticmethod
    def commands(initial_deposit, with_history, step, status):
        """The commands after the opening, as (command, arguments) in the services' terms."""
        balance = initial_deposit
        for n in range(1, with_history + 1):
            if n % 2:
                yield "deposit", {"amount": step, "source": f"history {n}"}
                balance += step
            else:
                yield "withdraw", {"amount": step, "reason": f"history {n}"}
                balance -= step
        if status == CLOSED and balance:
            yield "withdraw", {"amount": balance, "reason": "emptied before closing"}
        if status == FROZEN:
            yield "freeze", {"reason": "frozen by the factory"}
        if status == CLOSED:
            yield "close_account", {"reason": "closed by the factory"}

    @classmethod
    def _create(cls, model_class, *, owner, currency, initial_deposit, with_history, step, status):
        account = services.open_account(owner=owner, currency=currency, initial_deposit=initial_deposit)
        for command, arguments in cls.commands(initial_deposit, with_history, step, status):
            account = approved(command, account_id=account.id, **arguments)
        return account

    @classmethod
    def _build(cls, model_class, *, owner, currency, initial_deposit, with_history, step, status):
        ceiling = settings.ACCOUNT_AMOUNT_CEILING  # the services' limit: build refuses what create would
        account_id = uuid.uuid4()
        opened = model_class.open(
            account_id, owner=owner, currency=currency, initial_deposit=initial_deposit, ceiling=ceiling
        )
        account = model_class(account_id).with_events(opened)
        for command, arguments in cls.commands(initial_deposit, with_history, step, status):
            if command in ("deposit", "withdraw"):
                arguments = {**arguments, "ceiling": ceiling}
            if command in ("withdraw", "close_account"):  # decided as approved (`create` approves them)
                arguments = {**arguments, "four_eyes": WAIVED}
            decide = getattr(account, "close" if command == "close_account" else command)
            account = account.with_events(decide(**arguments))
        return account


class TransferPair(NamedTuple):
    """Both sides of one transfer, each as the transfer left it."""

    payer: BankAccount
    payee: BankAccount


class TransferPairFactory(factory.Factory):
    """Two accounts of one currency and a transfer of `amount` from the first to the second.

    Returns a TransferPair (payer, payee): the accounts after the transfer, at version 2
    each unless their own declarations add history. The payer opens with 1,000.00 and
    the payee with nothing, unless told otherwise (`payer__initial_deposit=...`).
    `create()` transfers through the services; `build()` only decides it, storing nothing.
    """

    class Meta:
        model = TransferPair

    class Params:
        currency = "EUR"

    payer = factory.SubFactory(AccountFactory, currency=factory.SelfAttribute("..currency"))
    payee = factory.SubFactory(AccountFactory, currency=factory.SelfAttribute("..currency"), initial_deposit=0)
    amount = 2_500
    reference = "rent"

    @classmethod
    def _create(cls, model_class, *, payer, payee, amount, reference):
        return model_class(*approved(
            "transfer", from_account_id=payer.id, to_account_id=payee.id, amount=amount, reference=reference
        ))  # fmt: skip

    @classmethod
    def _build(cls, model_class, *, payer, payee, amount, reference):
        sent, received = domain.transfer(
            payer, payee, transfer_id=uuid.uuid4(), amount=amount, reference=reference, four_eyes=WAIVED,
            ceiling=settings.ACCOUNT_AMOUNT_CEILING,
        )  # fmt: skip
        return model_class(payer.with_events(sent), payee.with_events(received))


class UserFactory(factory.django.DjangoModelFactory):
    """A member of staff; `role` puts them in that group (teller, supervisor, auditor)."""

    class Meta:
        model = "auth.User"
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"staff{n}")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def role(user, create, extracted, **kwargs):
        if extracted:
            from django.contrib.auth.models import Group

            from accounts.roles import ensure_roles

            ensure_roles()  # a transactional test's flush may have emptied the groups
            user.groups.add(Group.objects.get(name=extracted))
        user.save()
