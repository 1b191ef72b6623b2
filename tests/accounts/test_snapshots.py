"""Snapshots are a cache, upcasters a lens: neither changes any answer."""

import io
import json
import uuid

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from accounts import services
from accounts.domain import STATE_SCHEMA, AccountOnHold, BankAccount
from eventstore import snapshots
from eventstore.models import Snapshot
from eventstore.store import EventStore
from tests.factories import AccountFactory
from tests.support import insert_event, resign, without_trigger

pytestmark = pytest.mark.django_db


@pytest.fixture
def snapshot_every(settings):
    settings.EVENTSTORE_SNAPSHOT_EVERY = 5
    # Commands would start from the states their process holds (snapshots.recent) and never
    # read a snapshot row: these tests are about the rows, so the process holds none.
    settings.EVENTSTORE_RECENT_STATES = 0
    return 5


def deposits(account_id, count, amount=1):
    for n in range(count):
        services.deposit(account_id=account_id, amount=amount, source=f"d{n}")


def test_a_snapshot_is_taken_when_an_append_crosses_a_multiple(snapshot_every):
    account = AccountFactory(initial_deposit=0)
    deposits(account.id, 3)
    assert not Snapshot.objects.filter(aggregate_id=account.id).exists()
    deposits(account.id, 8)  # versions 5..12
    taken = Snapshot.objects.filter(aggregate_id=account.id).order_by("version")
    assert [(s.version, s.schema_version) for s in taken] == [(5, STATE_SCHEMA), (10, STATE_SCHEMA)]
    assert [s.state["balance"] for s in taken] == [4, 9]


def test_a_transfer_crossing_a_multiple_snapshots_each_account(snapshot_every):
    payer, payee = AccountFactory(), AccountFactory()
    deposits(payer.id, 3)
    deposits(payee.id, 3)
    services.transfer(from_account_id=payer.id, to_account_id=payee.id, amount=7, reference="r")
    assert set(Snapshot.objects.values_list("aggregate_id", "version")) >= {(payer.id, 5), (payee.id, 5)}


def test_loading_uses_the_snapshot_and_ignores_one_of_an_older_schema(snapshot_every):
    account = AccountFactory(initial_deposit=0)
    deposits(account.id, 6)  # snapshot at version 5, two events after it
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE snapshots SET state = jsonb_set(state, '{balance}', '1000') WHERE aggregate_id = %s",
            [account.id],
        )
    resign(account.id)
    # A doctored snapshot signed with the keys shows through: proof that loading starts from it.
    assert services.get_account(account.id).balance == 1002
    Snapshot.objects.filter(aggregate_id=account.id).update(schema_version=STATE_SCHEMA - 1)
    assert services.get_account(account.id).balance == 6


def test_deleting_every_snapshot_changes_no_answer(snapshot_every):
    account = AccountFactory(initial_deposit=0)
    deposits(account.id, 17)
    answers = [services.get_account(account.id, version=v) for v in range(1, 19)]
    Snapshot.objects.filter(aggregate_id=account.id).delete()
    assert [services.get_account(account.id, version=v) for v in range(1, 19)] == answers
    assert [a.balance for a in answers] == list(range(0, 18))


def test_a_version_below_the_snapshot_replays_from_the_start(snapshot_every):
    account = AccountFactory(initial_deposit=0)
    deposits(account.id, 12, amount=3)
    assert services.get_account(account.id, version=4).balance == 9
    assert services.get_account(account.id, version=11).balance == 30


def test_version_one_payloads_with_decimal_strings_load_as_the_current_events():
    account_id = uuid.uuid4()
    insert_event(
        account_id,
        "Opened",
        version=1,
        metadata={},
        data={"account_id": str(account_id), "owner": "Seed", "currency": "EUR", "initial_balance": "10.00"},
    )
    insert_event(account_id, "Deposited", version=2, metadata={}, data={"amount": "12.5", "source": "seed"})
    insert_event(
        account_id, "Withdrawn", version=3, metadata={}, data={"amount": "0.25", "reason": "fee", "schema_version": 1}
    )

    opened, deposited, withdrawn = EventStore().load(account_id)
    assert opened.data["initial_balance"] == 1000
    assert deposited.data == {"amount": 1250, "source": "seed", "schema_version": 2}
    assert withdrawn.data == {"amount": 25, "reason": "fee", "schema_version": 2}

    account = services.get_account(account_id)
    assert (account.balance, account.version, account.owner) == (2225, 3, "Seed")
    # and the stored rows are untouched
    with connection.cursor() as cursor:
        cursor.execute("SELECT event_data->>'amount' FROM events WHERE aggregate_id = %s AND version = 2", [account_id])
        assert cursor.fetchone() == ("12.5",)
    # commands work on top of upcast history
    assert services.withdraw(account_id=account_id, amount=225, reason="cash").balance == 2000


def plant_snapshot(account_id, version, state):
    """A snapshot row written as anyone holding the application's role could write it."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO snapshots (aggregate_id, aggregate_type, version, schema_version, state, taken_at) "
            "VALUES (%s, 'BankAccount', %s, %s, %s::jsonb, now()) ON CONFLICT (aggregate_id, version) DO UPDATE "
            "SET version = EXCLUDED.version, state = EXCLUDED.state, schema_version = EXCLUDED.schema_version",
            [account_id, version, STATE_SCHEMA, json.dumps(state)],
        )


def test_a_snapshot_naming_another_account_is_ignored_and_the_deposit_lands_where_asked(snapshot_every):
    victim, other = AccountFactory(initial_deposit=100), AccountFactory(initial_deposit=7)
    wrong = services.get_account(other.id).to_snapshot() | {"version": 1}
    plant_snapshot(victim.id, 1, wrong)
    before = snapshots.ignored.total()
    after = services.deposit(account_id=victim.id, amount=5, source="cash")
    assert (after.id, after.balance, after.version) == (victim.id, 105, 2)
    assert [e.aggregate_id for e in EventStore().load(victim.id)] == [victim.id, victim.id]
    assert services.get_account(other.id).version == 1
    assert snapshots.ignored.total() > before


@pytest.mark.parametrize(
    "version, state",
    [
        (999, lambda account: account.to_snapshot() | {"version": 999, "balance": 10**9}),  # ahead of the log
        (1, lambda account: {"garbage": True}),  # does not parse
        (1, lambda account: account.to_snapshot() | {"balance": "a lot"}),  # not an account's shape
        (1, lambda account: account.to_snapshot() | {"version": 2}),  # disagrees with its row
    ],
)
def test_an_untrustworthy_snapshot_is_ignored_and_commands_keep_working(version, state, caplog, snapshot_every):
    account = AccountFactory(initial_deposit=100)
    plant_snapshot(account.id, version, state(services.get_account(account.id)))
    assert services.get_account(account.id).balance == 100
    assert services.withdraw(account_id=account.id, amount=30, reason="cash").balance == 70
    assert "ignored; replaying from events" in caplog.text
    assert services.get_account(account.id, version=1).balance == 100


def test_take_snapshots_takes_a_good_snapshot_beside_a_bad_one_which_stays_ignored():
    account = AccountFactory(initial_deposit=100)
    plant_snapshot(account.id, 1, services.get_account(account.id).to_snapshot() | {"balance": 10**9})
    call_command("take_snapshots", str(account.id), stdout=io.StringIO())
    snapshot = Snapshot.objects.get(aggregate_id=account.id)  # the one at version 1, replaced
    assert (snapshot.version, snapshot.state) == (1, services.get_account(account.id).to_snapshot())
    assert snapshot.mac is not None and services.get_account(account.id).balance == 100


def test_replay_account_replays_from_events_alone(snapshot_every):
    account = AccountFactory(initial_deposit=100)
    deposits(account.id, 5)  # a snapshot at version 5
    with connection.cursor() as cursor:
        cursor.execute("UPDATE snapshots SET state = jsonb_set(state, '{balance}', '1000000') WHERE aggregate_id = %s",
                       [account.id])  # fmt: skip
    out = io.StringIO()
    call_command("replay_account", str(account.id), stdout=out)
    assert "balance  1.05 EUR" in out.getvalue()


def test_verify_event_store_compares_every_snapshot_with_a_replay(snapshot_every):
    honest, doctored, ahead = (AccountFactory(initial_deposit=100) for _ in range(3))
    for account in (honest, doctored):
        deposits(account.id, 5)  # snapshots at version 5
    plant_snapshot(ahead.id, 7, services.get_account(ahead.id).to_snapshot() | {"version": 7})
    with connection.cursor() as cursor:
        cursor.execute("UPDATE snapshots SET state = jsonb_set(state, '{balance}', '1000000') WHERE aggregate_id = %s",
                       [doctored.id])  # fmt: skip
    out = io.StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("verify_event_store", "--show", "5", stdout=out)
    assert caught.value.returncode == 1
    report = out.getvalue()
    assert "snapshots that differ from a replay of their events or are not signed: 2 FOUND" in report
    assert f"{doctored.id} version 5" in report and f"{ahead.id} version 7" in report
    assert str(honest.id) not in report


# --- the states a process holds from its own commands ----------------------------------------


def test_a_command_starts_from_the_state_its_process_committed_and_reads_only_the_events_since(round_trips):
    account = AccountFactory(initial_deposit=100)
    services.deposit(account_id=account.id, amount=5, source="cash")
    insert_event(account.id, "Deposited", {"amount": 7, "source": "elsewhere", "schema_version": 2})  # another writer
    with round_trips() as trace:
        after = services.deposit(account_id=account.id, amount=1, source="cash")
    assert (after.balance, after.version) == (113, 4)
    assert trace.sent("events_load_after") and not trace.sent("events_load(")
    assert after == services.get_account(account.id, from_events_only=True)


def test_a_held_state_the_log_is_behind_is_dropped_and_the_account_loaded_from_the_log():
    account = AccountFactory(initial_deposit=100)
    rolled_back = BankAccount(account.id, account.owner, "EUR", 10**6, "active", 9)  # as if v9 had been undone
    snapshots.recent.keep(services.ACCOUNT, snapshots.Loaded(rolled_back, None))
    after = services.deposit(account_id=account.id, amount=5, source="cash")
    assert (after.balance, after.version) == (105, 2)
    assert snapshots.recent.get(services.ACCOUNT, account.id).state == after


def test_a_past_view_starts_from_the_nearest_snapshot_at_or_below_it(snapshot_every):
    account = AccountFactory(initial_deposit=0)
    deposits(account.id, 24)  # versions 2 to 25: a snapshot at each multiple of 5, every one kept
    kept = Snapshot.objects.filter(aggregate_id=account.id).order_by("version").values_list("version", flat=True)
    assert list(kept) == [5, 10, 15, 20, 25]
    # The owner changes version 3 without the keys: only a view that reads version 3 meets it.
    without_trigger("events_no_update", "UPDATE events SET event_data = jsonb_set(event_data, '{amount}', '1000') "
                    "WHERE aggregate_id = %s AND version = 3", [account.id])  # fmt: skip
    assert services.get_account(account.id, version=12).balance == 11  # from the snapshot at 10
    with pytest.raises(AccountOnHold) as caught:
        services.get_account(account.id, version=4)  # before the first snapshot: from version 1
    assert caught.value.version == 3
