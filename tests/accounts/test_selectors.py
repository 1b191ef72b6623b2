"""Read queries: the chart's balances and the history pages agree with replay."""

import pytest

from accounts import selectors, services
from tests.factories import AccountFactory

pytestmark = pytest.mark.django_db


def busy_account():
    account, other = AccountFactory(initial_deposit=1_000), AccountFactory()
    services.deposit(account_id=account.id, amount=250, source="cash")
    services.withdraw(account_id=account.id, amount=100, reason="ATM")
    services.transfer(from_account_id=account.id, to_account_id=other.id, amount=300, reference="r")
    services.transfer(from_account_id=other.id, to_account_id=account.id, amount=75, reference="r")
    services.freeze(account_id=account.id, reason="check")
    return services.get_account(account.id)


def test_chart_points_are_the_replayed_balance_after_each_event():
    account = busy_account()
    points = selectors.balance_points(account)
    assert [p.version for p in points] == list(range(1, account.version + 1))
    assert [p.balance for p in points] == [services.get_account(account.id, version=p.version).balance for p in points]


def test_chart_of_the_last_events_only_and_of_a_past_version():
    account = busy_account()
    points = selectors.balance_points(account, limit=3)
    assert [p.version for p in points] == [account.version - 2, account.version - 1, account.version]
    past = services.get_account(account.id, version=3)
    assert [p.balance for p in selectors.balance_points(past)] == [1_000, 1_250, 1_150]


def test_history_pages_newest_first_by_version():
    account = busy_account()
    first = selectors.account_history(account.id, size=4)
    second = selectors.account_history(account.id, before_version=first.next_cursor, size=4)
    assert [e.version for e in first.items] == [6, 5, 4, 3]
    assert first.has_next and not second.has_next
    assert [e.version for e in second.items] == [2, 1]
