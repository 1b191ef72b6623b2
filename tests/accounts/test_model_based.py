"""Random command sequences against a plain in-memory model of the bank.

After every step: the same balances, statuses and errors as the model; snapshot
plus tail equals a full replay; the read model equals replay.
"""

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from accounts import domain, services
from accounts.domain import BankAccount
from accounts.models import Account
from eventstore.store import EventStore

store = EventStore()
CEILING = domain.DEFAULT_AMOUNT_CEILING
amounts = st.one_of(
    st.integers(min_value=1, max_value=500),
    st.integers(min_value=-5, max_value=0),
    st.sampled_from([CEILING - 1, CEILING, 10**20]),
)
texts = st.one_of(st.sampled_from(["ATM", "salary", "rent", "fraud check"]), st.just("   "))


class ModelAccount:
    def __init__(self, currency, balance):
        self.currency, self.balance, self.status = currency, balance, domain.ACTIVE


def expected_error(*checks):
    """The first failing check's error class, in the order the domain checks them."""
    for failed, error in checks:
        if failed:
            return error
    return None


class Bank(RuleBasedStateMachine):
    accounts = Bundle("accounts")

    @initialize()
    def start(self):
        self.model = {}

    @rule(target=accounts, initial=st.integers(min_value=0, max_value=1000), currency=st.sampled_from(["EUR", "GBP"]))
    def open(self, initial, currency):
        account = services.open_account(owner="Model Owner", initial_deposit=initial, currency=currency)
        self.model[account.id] = ModelAccount(currency, initial)
        return account.id

    def run(self, error, call):
        if error is None:
            call()
        else:
            with pytest.raises(error):
                call()

    def active_checks(self, account):
        return [
            (account.status == domain.CLOSED, domain.AccountClosed),
            (account.status == domain.FROZEN, domain.AccountFrozen),
        ]

    def amount_checks(self, amount, text):
        return [(not 0 < amount < CEILING, domain.InvalidAmount), (not text.strip(), domain.InvalidInput)]

    @rule(account_id=accounts, amount=amounts, source=texts)
    def deposit(self, account_id, amount, source):
        account = self.model[account_id]
        error = expected_error(*self.amount_checks(amount, source), *self.active_checks(account))
        self.run(error, lambda: services.deposit(account_id=account_id, amount=amount, source=source))
        if error is None:
            account.balance += amount

    @rule(account_id=accounts, amount=amounts, reason=texts)
    def withdraw(self, account_id, amount, reason):
        account = self.model[account_id]
        error = expected_error(
            *self.amount_checks(amount, reason),
            *self.active_checks(account),
            (amount > account.balance, domain.InsufficientFunds),
        )
        self.run(error, lambda: services.withdraw(account_id=account_id, amount=amount, reason=reason))
        if error is None:
            account.balance -= amount

    @rule(account_id=accounts, offset=st.sampled_from([-1, 0, 1]))
    def withdraw_near_the_balance(self, account_id, offset):
        self.withdraw(account_id, self.model[account_id].balance + offset, "edge")

    @rule(account_id=accounts, reason=texts)
    def freeze(self, account_id, reason):
        account = self.model[account_id]
        error = expected_error(
            (not reason.strip(), domain.InvalidInput),
            (account.status == domain.CLOSED, domain.AccountClosed),
            (account.status == domain.FROZEN, domain.AccountFrozen),
        )
        self.run(error, lambda: services.freeze(account_id=account_id, reason=reason))
        if error is None:
            account.status = domain.FROZEN

    @rule(account_id=accounts, reason=texts)
    def unfreeze(self, account_id, reason):
        account = self.model[account_id]
        error = expected_error(
            (not reason.strip(), domain.InvalidInput),
            (account.status == domain.CLOSED, domain.AccountClosed),
            (account.status != domain.FROZEN, domain.AccountNotFrozen),
        )
        self.run(error, lambda: services.unfreeze(account_id=account_id, reason=reason))
        if error is None:
            account.status = domain.ACTIVE

    @rule(account_id=accounts, reason=texts)
    def close(self, account_id, reason):
        account = self.model[account_id]
        error = expected_error(
            (not reason.strip(), domain.InvalidInput),
            (account.status == domain.CLOSED, domain.AccountClosed),
            (account.balance != 0, domain.BalanceNotZero),
        )
        self.run(error, lambda: services.close_account(account_id=account_id, reason=reason))
        if error is None:
            account.status = domain.CLOSED

    @rule(source_id=accounts, target_id=accounts, amount=amounts, reference=texts)
    def transfer(self, source_id, target_id, amount, reference):
        source, target = self.model[source_id], self.model[target_id]
        error = expected_error(
            *self.amount_checks(amount, reference),
            (source_id == target_id, domain.SameAccountTransfer),
            *self.active_checks(source),
            *self.active_checks(target),
            (source.currency != target.currency, domain.CurrencyMismatch),
            (amount > source.balance, domain.InsufficientFunds),
        )
        self.run(
            error,
            lambda: services.transfer(
                from_account_id=source_id, to_account_id=target_id, amount=amount, reference=reference
            ),
        )
        if error is None:
            source.balance -= amount
            target.balance += amount

    @invariant()
    def matches_the_model_replay_and_read_model(self):
        if not hasattr(self, "model"):
            return
        rows = {row.account_id: row for row in Account.objects.filter(account_id__in=list(self.model))}
        for account_id, expected in self.model.items():
            loaded = services.get_account(account_id)
            full = BankAccount.from_events(
                account_id, [(e.version, e.event_type, e.data) for e in store.load(account_id)]
            )
            assert loaded == full
            assert (loaded.balance, loaded.status, loaded.currency) == (
                expected.balance,
                expected.status,
                expected.currency,
            )
            row = rows[account_id]
            assert (row.balance, row.status, row.version, row.currency) == (
                full.balance, full.status, full.version, full.currency
            )  # fmt: skip


@pytest.mark.django_db
def test_random_command_sequences_agree_with_the_model(settings):
    settings.EVENTSTORE_SNAPSHOT_EVERY = 3  # so that most loads go through a snapshot
    run_state_machine_as_test(
        Bank,
        settings=hypothesis_settings(
            max_examples=25, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
        ),
    )
