"""The factories: build() and create() give the same account, and only create() stores it."""

import pytest
from django.db import connection

from accounts import services
from accounts.domain import BankAccount
from tests.factories import AccountFactory, TransferPairFactory

pytestmark = pytest.mark.django_db


def stored_events():
    """The accounts' events (a close is asked for and approved: its request has events of its own)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM events WHERE aggregate_type = 'BankAccount'")
        return cursor.fetchone()[0]


def state(account):
    """The account's state without its id, which each strategy draws afresh."""
    return {key: value for key, value in account.to_snapshot().items() if key != "id"}


CASES = {
    "opened": ({"initial_deposit": 5_000}, ("active", 5_000, 1)),
    "frozen": ({"initial_deposit": 5_000, "frozen": True}, ("frozen", 5_000, 2)),
    "closed with money in it": ({"initial_deposit": 5_000, "closed": True}, ("closed", 0, 3)),
    "closed empty": ({"initial_deposit": 0, "closed": True}, ("closed", 0, 2)),
    "an even history": ({"initial_deposit": 5_000, "with_history": 4}, ("active", 5_000, 5)),
    "an odd history": ({"initial_deposit": 5_000, "with_history": 5, "step": 100}, ("active", 5_100, 6)),
    "a history, then closed": ({"initial_deposit": 5_000, "with_history": 3, "closed": True}, ("closed", 0, 6)),
    "a history, then frozen": ({"initial_deposit": 5_000, "with_history": 2, "frozen": True}, ("frozen", 5_000, 4)),
}


@pytest.mark.parametrize("arguments, expected", CASES.values(), ids=CASES.keys())
def test_build_and_create_give_the_same_state_and_only_create_stores_it(arguments, expected):
    before = stored_events()
    built = AccountFactory.build(owner="Ada Lovelace", currency="GBP", **arguments)
    assert stored_events() == before
    created = AccountFactory.create(owner="Ada Lovelace", currency="GBP", **arguments)
    assert isinstance(built, BankAccount) and isinstance(created, BankAccount)
    assert (built.status, built.balance, built.version) == expected
    assert state(built) == state(created)
    assert services.get_account(created.id) == created
    assert stored_events() == before + created.version


@pytest.mark.parametrize("strategy", ["build", "create"])
def test_a_transfer_pair_is_both_accounts_after_one_transfer_in_one_currency(strategy):
    before = stored_events()
    payer, payee = getattr(TransferPairFactory, strategy)(
        currency="JPY", amount=300, payer__initial_deposit=1_000, payee__initial_deposit=50
    )
    assert (payer.balance, payee.balance) == (700, 350)
    assert (payer.version, payee.version) == (2, 2)
    assert payer.currency == payee.currency == "JPY"
    if strategy == "create":
        assert (services.get_account(payer.id), services.get_account(payee.id)) == (payer, payee)
        assert stored_events() == before + 4
    else:
        assert stored_events() == before
