"""Staff acting on one account at once each get a definite answer, never a conflict."""

import threading
import time
from collections import Counter

import pytest

from accounts import services
from accounts.domain import InsufficientFunds
from accounts.models import Account
from eventstore.store import EventStore
from tests.factories import AccountFactory
from tests.support import insert_event, run_threads

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
store = EventStore()


def test_eight_tellers_withdrawing_past_the_balance_get_exactly_half_through():
    per_thread, amount = 6, 25
    account = AccountFactory(initial_deposit=8 * per_thread * amount // 2)
    outcomes = Counter()
    lock = threading.Lock()
    start = threading.Barrier(8)

    def teller(index):
        start.wait(timeout=10)
        for n in range(per_thread):
            try:
                services.withdraw(account_id=account.id, amount=amount, reason=f"t{index}-{n}")
                result = "done"
            except InsufficientFunds:
                result = "insufficient"
            with lock:
                outcomes[result] += 1

    run_threads(teller, 8)
    history = store.load(account.id)
    assert outcomes == {"done": 24, "insufficient": 24}
    assert [e.version for e in history] == list(range(1, 26))
    assert sum(1 for e in history if e.event_type == "Withdrawn") == 24
    final = services.get_account(account.id)
    assert final.balance == 0
    assert Account.objects.get(account_id=account.id).balance == 0


def test_opposite_transfers_from_eight_threads_all_succeed_and_conserve_money():
    alice, bob = AccountFactory(initial_deposit=10_000), AccountFactory(initial_deposit=10_000)
    start = threading.Barrier(8)

    def clerk(index):
        source, target = (alice, bob) if index % 2 else (bob, alice)
        start.wait(timeout=10)
        for n in range(10):
            services.transfer(
                from_account_id=source.id, to_account_id=target.id, amount=7 + index, reference=f"{index}-{n}"
            )

    run_threads(clerk, 8)
    a, b = services.get_account(alice.id), services.get_account(bob.id)
    assert a.balance + b.balance == 20_000
    assert a.version == b.version == 1 + 80  # each transfer adds one event to each account
    sent = sum(e.data["amount"] for e in store.load(alice.id) if e.event_type == "TransferSent")
    received = sum(e.data["amount"] for e in store.load(alice.id) if e.event_type == "TransferReceived")
    assert a.balance == 10_000 - sent + received
    rows = {r.account_id: r.balance for r in Account.objects.filter(account_id__in=[a.id, b.id])}
    assert rows == {a.id: a.balance, b.id: b.balance}


def test_the_same_deposit_submitted_concurrently_with_one_key_stores_one_event():
    account = AccountFactory(initial_deposit=0)
    start = threading.Barrier(8)
    results = []

    def double_click(_):
        start.wait(timeout=10)
        results.append(services.deposit(account_id=account.id, amount=1234, source="cash", idempotency_key="click-1"))

    run_threads(double_click, 8)
    deposits = [e for e in store.load(account.id) if e.event_type == "Deposited"]
    assert len(deposits) == 1
    assert len(results) == 8
    assert all(r == results[0] for r in results)
    assert (results[0].balance, results[0].version) == (1234, 2)


def competing_deposit(raw_connect, account_id):
    """Append the account's next event from another session, bypassing the writer lock."""
    outside = {"amount": 1, "source": "outside", "schema_version": 2}
    insert_event(account_id, "Deposited", outside, metadata={}, connection=raw_connect(autocommit=True))


def test_a_lost_race_is_retried_against_the_new_state(monkeypatch, raw_connect):
    account = AccountFactory(initial_deposit=100)
    original = services._existing
    calls = []

    def load_then_lose_the_race(unit, account_id):
        (loaded,) = original(unit, account_id)
        calls.append(loaded.version)
        if len(calls) == 1:
            competing_deposit(raw_connect, account_id)
        return [loaded]

    monkeypatch.setattr(services, "_existing", load_then_lose_the_race)
    after = services.withdraw(account_id=account.id, amount=50, reason="cash")
    assert calls == [1, 2]
    assert (after.balance, after.version) == (51, 3)
    assert [e.event_type for e in store.load(account.id)] == ["Opened", "Deposited", "Withdrawn"]


def test_retries_are_bounded_and_the_conflict_then_reaches_the_caller(monkeypatch, raw_connect):
    from eventstore.commands import MAX_ATTEMPTS
    from eventstore.store import ConcurrencyConflict

    account = AccountFactory(initial_deposit=100)
    original = services._existing
    attempts = []

    def always_lose(unit, account_id):
        (loaded,) = original(unit, account_id)
        attempts.append(loaded.version)
        competing_deposit(raw_connect, account_id)
        return [loaded]

    monkeypatch.setattr(services, "_existing", always_lose)
    with pytest.raises(ConcurrencyConflict) as caught:
        services.withdraw(account_id=account.id, amount=5, reason="never lands")
    assert len(attempts) == MAX_ATTEMPTS
    assert f"aggregate {account.id} moved past version {attempts[-1]}" in str(caught.value)
    assert f"withdraw gave up after {MAX_ATTEMPTS} attempts" in str(caught.value)
    assert not any(e.event_type == "Withdrawn" for e in store.load(account.id))


def test_a_command_that_waited_for_the_account_dates_its_event_after_the_one_it_waited_for(raw_connect):
    from eventstore.snapshots import lock_key

    account = AccountFactory(initial_deposit=100)
    holder = raw_connect()
    holder.execute("SELECT pg_advisory_xact_lock(%s)", [lock_key(account.id)])

    def append_while_the_deposit_waits():
        time.sleep(0.5)  # the deposit's transaction has begun and waits for the lock
        # Dated by the clock as it inserts: after the waiting deposit's transaction began.
        insert_event(
            account.id, "Deposited", {"amount": 1, "source": "holder"}, version=2, metadata={}, connection=holder
        )
        holder.commit()

    other = threading.Thread(target=append_while_the_deposit_waits)
    other.start()
    services.deposit(account_id=account.id, amount=5, source="waited")
    other.join(timeout=10)
    history = store.load(account.id)
    assert [(e.version, e.data["source"]) for e in history[1:]] == [(2, "holder"), (3, "waited")]
    assert history[2].created_at >= history[1].created_at
