"""Random command sequences against a plain in-memory model of the bank.

Large withdrawals and transfers, closes and unfreezes wait for approval; requests are
approved (by another person, or refused to their maker), rejected or cancelled, some
twice. After every step: the same balances, statuses and errors as the model; money
is conserved; no request ran twice; snapshot plus tail equals a full replay; the read
model equals replay.
"""

from collections import defaultdict

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from accounts import domain, services
from accounts.approvals import APPROVED, FAILED, PENDING, ApprovalPending, OwnRequest, RequestNotPending
from accounts.domain import BankAccount
from accounts.models import Account
from eventstore.context import metadata_context
from eventstore.store import EventStore

store = EventStore()
CEILING = domain.DEFAULT_AMOUNT_CEILING
amounts = st.one_of(
    st.integers(min_value=1, max_value=500),
    st.integers(min_value=-5, max_value=0),
    st.sampled_from([CEILING - 1, CEILING, 10**20]),
)
APPROVAL_FROM = 100  # minor units: APPROVAL_AT of 1 (major) in EUR and GBP, so that many commands wait
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
    requests = Bundle("requests")

    @initialize()
    def start(self):
        self.model = {}
        self.paid_in = 0  # money from outside the bank, less money paid out: what the balances must add up to
        self.asked = {}  # request id -> (command, arguments, state)

    @rule(target=accounts, initial=st.integers(min_value=0, max_value=1000), currency=st.sampled_from(["EUR", "GBP"]))
    def open(self, initial, currency):
        account = services.open_account(owner="Model Owner", initial_deposit=initial, currency=currency)
        self.model[account.id] = ModelAccount(currency, initial)
        self.paid_in += initial
        return account.id

    def run(self, error, call):
        if error is None:
            return call()
        with pytest.raises(error):
            call()
        return None

    def active_checks(self, account):
        return [
            (account.status == domain.CLOSED, domain.AccountClosed),
            (account.status == domain.FROZEN, domain.AccountFrozen),
        ]

    def amount_checks(self, amount, text):
        return [(not 0 < amount < CEILING, domain.InvalidAmount), (not text.strip(), domain.InvalidInput)]

    # What the rules say of each command that may wait, in the order the domain checks them,
    # and what it does to the model: the maker's call and a checker's approval use both.
    def refusal(self, command, a):
        account = self.model[a["account_id"]]
        if command == "withdraw":
            return expected_error(*self.amount_checks(a["amount"], a["reason"]), *self.active_checks(account),
                                  (a["amount"] > account.balance, domain.InsufficientFunds))  # fmt: skip
        if command == "transfer":
            target = self.model[a["to_account_id"]]
            return expected_error(
                *self.amount_checks(a["amount"], a["reference"]),
                (a["account_id"] == a["to_account_id"], domain.SameAccountTransfer),
                *self.active_checks(account), *self.active_checks(target),
                (account.currency != target.currency, domain.CurrencyMismatch),
                (a["amount"] > account.balance, domain.InsufficientFunds),
            )  # fmt: skip
        if command == "unfreeze":
            return expected_error((not a["reason"].strip(), domain.InvalidInput),
                                  (account.status == domain.CLOSED, domain.AccountClosed),
                                  (account.status != domain.FROZEN, domain.AccountNotFrozen))  # fmt: skip
        return expected_error((not a["reason"].strip(), domain.InvalidInput),
                              (account.status == domain.CLOSED, domain.AccountClosed),
                              (account.balance != 0, domain.BalanceNotZero))  # fmt: skip

    def waits(self, command, a):
        return command in ("unfreeze", "close_account") or a["amount"] >= APPROVAL_FROM

    def carry_out(self, command, a):
        account = self.model[a["account_id"]]
        if command == "withdraw":
            account.balance -= a["amount"]
            self.paid_in -= a["amount"]
        elif command == "transfer":
            account.balance -= a["amount"]
            self.model[a["to_account_id"]].balance += a["amount"]
        else:
            account.status = domain.ACTIVE if command == "unfreeze" else domain.CLOSED

    def ask(self, command, a, call):
        """The maker's call: refused, run at once, or stored as a request (returned, for the bundle)."""
        error = self.refusal(command, a)
        if error is None and self.waits(command, a):
            with metadata_context(actor="maker"), pytest.raises(ApprovalPending) as pending:
                call()
            request = pending.value.request
            self.asked[request.id] = (command, a, PENDING)
            return request.id
        with metadata_context(actor="maker"):
            self.run(error, call)
        if error is None:
            self.carry_out(command, a)
        return multiple()

    @rule(account_id=accounts, amount=amounts, source=texts)
    def deposit(self, account_id, amount, source):
        account = self.model[account_id]
        error = expected_error(*self.amount_checks(amount, source), *self.active_checks(account))
        self.run(error, lambda: services.deposit(account_id=account_id, amount=amount, source=source))
        if error is None:
            account.balance += amount
            self.paid_in += amount

    @rule(target=requests, account_id=accounts, amount=amounts, reason=texts)
    def withdraw(self, account_id, amount, reason):
        a = {"account_id": account_id, "amount": amount, "reason": reason}
        return self.ask("withdraw", a, lambda: services.withdraw(**a))

    @rule(target=requests, account_id=accounts, offset=st.sampled_from([-1, 0, 1]))
    def withdraw_near_the_balance(self, account_id, offset):
        return self.withdraw(account_id, self.model[account_id].balance + offset, "edge")

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

    @rule(target=requests, account_id=accounts, reason=texts)
    def unfreeze(self, account_id, reason):
        a = {"account_id": account_id, "reason": reason}
        return self.ask("unfreeze", a, lambda: services.unfreeze(**a))

    @rule(target=requests, account_id=accounts, reason=texts)
    def close(self, account_id, reason):
        a = {"account_id": account_id, "reason": reason}
        return self.ask("close_account", a, lambda: services.close_account(**a))

    @rule(target=requests, source_id=accounts, target_id=accounts, amount=amounts, reference=texts)
    def transfer(self, source_id, target_id, amount, reference):
        a = {"account_id": source_id, "to_account_id": target_id, "amount": amount, "reference": reference}
        return self.ask("transfer", a, lambda: services.transfer(
            from_account_id=source_id, to_account_id=target_id, amount=amount, reference=reference))  # fmt: skip

    @rule(target=requests, source_id=accounts, target_id=accounts, offset=st.sampled_from([-1, 0]))
    def transfer_near_the_balance(self, source_id, target_id, offset):
        return self.transfer(source_id, target_id, self.model[source_id].balance + offset, "rent")

    @rule(request_id=requests, how=st.sampled_from(["approve", "approve", "approve twice", "approve as its maker",
                                                     "reject", "cancel"]))  # fmt: skip
    def decide(self, request_id, how):
        command, a, state = self.asked[request_id]
        with metadata_context(actor="maker" if how in ("approve as its maker", "cancel") else "checker"):
            call = {"reject": lambda: services.reject(request_id=request_id, reason="no"),
                    "cancel": lambda: services.cancel(request_id=request_id, reason="no")}.get(
                how, lambda: services.approve(request_id=request_id))  # fmt: skip
            if state != PENDING:
                with pytest.raises(RequestNotPending):
                    call()
                return
            if how == "approve as its maker":
                with pytest.raises(OwnRequest):
                    call()
                return
            error = self.refusal(command, a) if how.startswith("approve") else None
            done = call()
            if how.startswith("approve"):
                assert done.state == (FAILED if error else APPROVED)
                if error is None:
                    self.carry_out(command, a)
            self.asked[request_id] = (command, a, done.state)
            if how == "approve twice":  # a second click, or a second supervisor: it never runs again
                with pytest.raises(RequestNotPending):
                    call()

    @invariant()
    def money_is_conserved_and_no_request_ran_twice(self):
        if not hasattr(self, "model"):
            return
        assert sum(account.balance for account in self.model.values()) == self.paid_in
        ran = defaultdict(set)  # request id -> the commands (by causation id) that carried it out
        for account_id in self.model:
            for event in store.load(account_id):
                if "approval_request_id" in (event.metadata or {}):
                    ran[event.metadata["approval_request_id"]].add(event.metadata["causation_id"])
        for request_id, (command, _, state) in self.asked.items():
            assert len(ran[str(request_id)]) == (1 if state == APPROVED else 0), (command, state)

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
    settings.APPROVAL_AT = {"EUR": APPROVAL_FROM // 100, "GBP": APPROVAL_FROM // 100}
    run_state_machine_as_test(
        Bank,
        settings=hypothesis_settings(
            max_examples=40, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
        ),
    )
