"""The command unit: one durable transaction, keys namespaced by who acts, clear failures."""

import time
import uuid

import pytest
from django.db import connection, transaction

from accounts import services
from accounts.domain import AccountBusy, InvalidInput
from eventstore import commands
from eventstore.context import metadata_context
from eventstore.models import CommandLog
from eventstore.snapshots import lock_key
from eventstore.store import EventStore
from tests.factories import AccountFactory
from tests.support import insert_event

pytestmark = pytest.mark.django_db
store = EventStore()


def deposits(account_id):
    return [e for e in store.load(account_id) if e.event_type == "Deposited"]


def test_a_command_inside_an_outer_transaction_fails_at_once_without_retrying(monkeypatch):
    account = AccountFactory()
    attempts = []
    original = services._existing
    monkeypatch.setattr(services, "_existing", lambda unit, *ids: attempts.append(ids) or original(unit, *ids))
    with pytest.raises(RuntimeError, match="durable atomic block cannot be nested"):
        with transaction.atomic():
            services.deposit(account_id=account.id, amount=5, source="cash")
    assert attempts == []
    assert deposits(account.id) == []


def test_one_persons_idempotency_key_never_answers_for_anothers():
    account = AccountFactory(initial_deposit=0)
    with metadata_context(actor="alice"):
        first = services.deposit(account_id=account.id, amount=700, source="cash", idempotency_key="form-1")
    with metadata_context(actor="bob"):
        second = services.deposit(account_id=account.id, amount=700, source="cash", idempotency_key="form-1")
    assert (first.balance, second.balance) == (700, 1400)
    with metadata_context(actor="alice"), commands.outcome() as seen:
        again = services.deposit(account_id=account.id, amount=700, source="cash", idempotency_key="form-1")
    assert seen.replayed and again == first
    assert len(deposits(account.id)) == 2
    assert set(CommandLog.objects.filter(key__endswith=":form-1").values_list("key", flat=True)) == {
        "alice:form-1",
        "bob:form-1",
    }


def test_the_outcome_tells_a_first_run_from_a_repeat():
    account = AccountFactory()
    with commands.outcome() as first:
        services.freeze(account_id=account.id, reason="check", idempotency_key="f-1")
    with commands.outcome() as repeat:
        services.freeze(account_id=account.id, reason="check", idempotency_key="f-1")
    assert (first.replayed, repeat.replayed) == (False, True)


def test_an_explicit_causation_id_is_kept_and_otherwise_each_command_is_its_own_cause():
    account = AccountFactory()
    with metadata_context(causation_id="admin:freeze"):
        services.freeze(account_id=account.id, reason="check")
    other = AccountFactory()
    services.deposit(account_id=other.id, amount=5, source="cash")
    frozen, deposited = store.load(account.id)[1], store.load(other.id)[1]
    assert frozen.metadata["causation_id"] == "admin:freeze"
    assert uuid.UUID(deposited.metadata["causation_id"])


@pytest.mark.django_db(transaction=True)
def test_a_command_waiting_past_the_lock_timeout_says_the_account_is_busy_and_does_nothing(raw_connect):
    account = AccountFactory(initial_deposit=100)
    holder = raw_connect()
    holder.execute("SELECT pg_advisory_xact_lock(%s)", [lock_key(account.id)])  # a stuck command
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '200ms'")
    started = time.monotonic()
    try:
        with pytest.raises(AccountBusy, match="busy.*Nothing was done"):
            services.withdraw(account_id=account.id, amount=5, reason="ATM")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
        holder.rollback()
    assert time.monotonic() - started < 5
    assert services.get_account(account.id).version == 1


def test_keys_are_checked_before_anything_is_stored():
    account = AccountFactory()
    for key in ("", " ", "k" * 101, "a\x00b", "line\nbreak", "\ud800"):
        with pytest.raises(InvalidInput):
            services.deposit(account_id=account.id, amount=5, source="cash", idempotency_key=key)
    assert deposits(account.id) == []
    assert services.deposit(account_id=account.id, amount=5, source="cash", idempotency_key="k" * 100).version == 2


def test_the_longest_username_with_the_longest_key_fits_the_command_log():
    account = AccountFactory(initial_deposit=0)
    with metadata_context(actor="u" * 150):
        services.deposit(account_id=account.id, amount=5, source="cash", idempotency_key="k" * 100)
        again = services.deposit(account_id=account.id, amount=5, source="cash", idempotency_key="k" * 100)
    assert again.balance == 5 and len(deposits(account.id)) == 1


def waits(trace) -> int:
    """How many times the client waited for the server: each Sync, or each Flush not right after a Sync."""
    kinds = [message[0] for message in trace.messages]
    return sum(1 for n, kind in enumerate(kinds) if kind == "Sync" or (kind == "Flush" and kinds[n - 1] != "Sync"))


@pytest.mark.django_db(transaction=True)
def test_a_command_costs_two_round_trips_the_loads_then_the_writes_in_one_transaction(round_trips):
    account, other = AccountFactory(initial_deposit=100), AccountFactory(initial_deposit=100)
    key = str(uuid.uuid4())
    for command in (
        lambda: services.deposit(account_id=account.id, amount=5, source="cash", idempotency_key=key),
        lambda: services.transfer(from_account_id=account.id, to_account_id=other.id, amount=5, reference="rent"),
        lambda: services.open_account(owner="Ann", initial_deposit=0, idempotency_key=str(uuid.uuid4())),
    ):
        with round_trips() as trace:
            command()
        assert waits(trace) == 2, [message[0] for message in trace.messages]
    # One transaction each: the events of a transfer, and a deposit with its command-log row.
    sent, received = store.load(account.id)[-1], store.load(other.id)[-1]
    assert sent.transaction_id == received.transaction_id
    with connection.cursor() as cursor:
        cursor.execute("SELECT xmin::text FROM command_log WHERE key = %s", [f"anonymous:{key}"])
        (logged,) = cursor.fetchone()
    assert int(logged) == store.load(account.id)[1].transaction_id % 2**32


@pytest.mark.django_db(transaction=True)
def test_a_lost_race_found_at_commit_is_retried_and_leaves_the_connection_usable(raw_connect, monkeypatch):
    account = AccountFactory(initial_deposit=100)
    raced = []
    original = services._existing

    def lose_once(unit, account_id):
        loaded = original(unit, account_id)
        if not raced:
            raced.append(True)
            outside = raw_connect()  # a writer that bypasses the lock stores version 2 while this command decides
            data = {"amount": 1, "schema_version": 2, "source": "elsewhere"}
            insert_event(account_id, "Deposited", data, version=2, metadata={}, connection=outside)
            outside.commit()
        return loaded

    monkeypatch.setattr(services, "_existing", lose_once)
    after = services.withdraw(account_id=account.id, amount=50, reason="cash")
    assert (after.balance, after.version) == (51, 3)
    with connection.cursor() as cursor:  # nothing left half-open on Django's connection
        cursor.execute("SELECT 1")
        assert connection.connection.info.transaction_status.name == "IDLE"
    assert not connection.in_atomic_block
