"""Read queries: the chart's balances and the history pages agree with replay; lists page by keyset."""

import uuid

import pytest
from django.utils import timezone

from accounts import selectors, services
from accounts.bulk import write_histories
from accounts.domain import BankAccount
from accounts.models import Account
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


def opened_together(owners, at):
    """Accounts opened at one same moment, as a bulk load opens them: only their ids tell them apart."""
    ids = [uuid.uuid4() for _ in owners]
    write_histories({
        account_id: [(BankAccount.open(account_id, owner=owner, currency="EUR", initial_deposit=0)[0], at, {})]
        for account_id, owner in zip(ids, owners, strict=True)
    })  # fmt: skip
    return ids


def test_the_account_list_pages_by_keyset_through_ties_without_a_row_twice_or_missed():
    AccountFactory(owner="Keyset First"), AccountFactory(owner="Keyset Second")
    at = timezone.now()
    tied = opened_together([f"Keyset Tied {n}" for n in range(5)], at)
    AccountFactory(owner="Keyset Last")
    seen, after = [], None
    while True:
        page = selectors.search_accounts(query="keyset", size=3, after=after)
        seen += [row.account_id for row in page.items]
        if not page.has_next:
            break
        after = selectors.AccountCursor.parse(page.next_cursor)
    expected = Account.objects.filter(owner__startswith="Keyset").order_by("-opened_at", "-account_id")
    assert seen == [row.account_id for row in expected] and len(seen) == 8
    assert set(tied) <= set(seen)


def test_the_account_list_estimates_what_it_would_cost_a_scan_to_count():
    AccountFactory(owner="Estimated Customer")
    assert selectors.estimated_accounts() >= 1  # the planner's figure: never a count(*)
