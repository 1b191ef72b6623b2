"""verify_event_store: every check names what it found, by event, and records it for the dashboard."""

import datetime
import io
import uuid

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from accounts import services
from eventstore.models import IntegrityFinding, IntegrityRun, Seal
from tests.factories import AccountFactory, TransferPairFactory, UserFactory
from tests.support import resign, without_trigger

pytestmark = pytest.mark.django_db


def verify(*args):
    """verify_event_store's report, and whether it found anything."""
    out = io.StringIO()
    try:
        call_command("verify_event_store", "--show", "50", *args, stdout=out)
    except CommandError as error:
        assert error.returncode == 1
        return out.getvalue(), True
    return out.getvalue(), False


def test_a_clean_log_is_ok_and_the_run_is_recorded():
    TransferPairFactory()
    report, found = verify()
    assert not found and "event store ok" in report
    run = IntegrityRun.objects.latest("id")
    assert run.findings == 0 and "database role" in run.run_by


@pytest.fixture(scope="module")
def history(django_db_setup, django_db_blocker):
    """A few accounts with deposits, withdrawals and a transfer, committed once for the module."""
    with django_db_blocker.unblock():
        accounts = [services.open_account(owner=f"Holder {n}", initial_deposit=10_000) for n in range(3)]
        for n, account in enumerate(accounts):
            services.deposit(account_id=account.id, amount=100 + n, source="salary")
            services.withdraw(account_id=account.id, amount=50, reason="rent")
        services.transfer(from_account_id=accounts[0].id, to_account_id=accounts[1].id, amount=70, reference="r")
        ids = [account.id for account in accounts]
        with connection.cursor() as cursor:
            cursor.execute("SELECT id FROM events WHERE aggregate_id = ANY(%s) ORDER BY id", [ids])
            events = [row[0] for row in cursor.fetchall()]
        yield events
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE events DISABLE TRIGGER events_no_delete")
            cursor.execute("DELETE FROM events WHERE aggregate_id = ANY(%s)", [ids])
            cursor.execute("ALTER TABLE events ENABLE TRIGGER events_no_delete")
            for table, column in (("snapshots", "aggregate_id"), ("account_read_model", "account_id")):
                cursor.execute(f"DELETE FROM {table} WHERE {column} = ANY(%s)", [ids])
            cursor.execute("DELETE FROM account_daily_statement WHERE account_id = ANY(%s)", [ids])


CHANGES = {
    "aggregate_id": "aggregate_id = %s",
    "version": "version = version + 1000",
    "event_type": "event_type = event_type || 'X'",
    # Added to what is there: setting the amount a withdrawal of 50 already had would change nothing.
    "payload": "event_data = event_data || "
    "jsonb_build_object('amount', COALESCE(event_data->>'amount', '0')::bigint + %s)",
    "metadata": "metadata = COALESCE(metadata, '{}') || jsonb_build_object('actor', %s)",
    "created_at": "created_at = created_at - interval '1 microsecond'",
}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(min_value=0), field=st.sampled_from(sorted(CHANGES)), value=st.integers(1, 10**6))
@example(which=4, field="payload", value=50)  # the first account's withdrawal of 50: its amount must still change
def test_any_value_the_owner_changes_in_any_event_is_named_by_its_event(history, which, field, value):
    event_id = history[which % len(history)]
    params = {"aggregate_id": [uuid.uuid4()], "payload": [value], "metadata": [f"forger{value}"]}.get(field, [])
    with transaction.atomic():
        without_trigger("events_no_update", f"UPDATE events SET {CHANGES[field]} WHERE id = %s", [*params, event_id])
        report, found = verify()
        transaction.set_rollback(True)
    assert found and f"(event {event_id})" in report, (field, report)


def test_a_transfer_without_its_counterpart_and_a_key_without_its_command_log_row_are_found(tamper):
    account = AccountFactory(initial_deposit=500)
    sent = tamper(account.id, "TransferSent", {"transfer_id": str(uuid.uuid4()), "to_account_id": str(uuid.uuid4()),
                                             "amount": 10, "reference": "r", "schema_version": 2})  # fmt: skip
    keyed = tamper(account.id, "Deposited", {"amount": 5, "source": "s", "schema_version": 2},
                   metadata={"actor": "teller", "idempotency_key": "never-recorded"})  # fmt: skip
    report, found = verify()
    assert found
    assert f"transfers not matched by exactly one counterpart of the same amount: {account.id} version 2 " \
           f"(event {sent})" in report  # fmt: skip
    assert f"the command log does not hold: {account.id} version 3 (event {keyed}): key never-recorded" in report
    run = IntegrityRun.objects.latest("id")
    assert {f.event_id for f in IntegrityFinding.objects.filter(run=run)} >= {sent, keyed}


def test_since_checks_only_the_aggregates_written_after_the_position(tamper):
    untouched = AccountFactory(initial_deposit=10)
    tamper(untouched.id, "Deposited", {"amount": 1, "source": "s", "schema_version": 2}, signed=False)
    report, found = verify()
    assert found and f"{untouched.id} version 2" in report
    with connection.cursor() as cursor:
        cursor.execute("SELECT transaction_id::text, id FROM events ORDER BY transaction_id DESC, id DESC LIMIT 1")
        transaction_id, event_id = cursor.fetchone()
    written = AccountFactory(initial_deposit=10)
    report, found = verify("--since", f"{transaction_id}:{event_id}")
    assert not found and str(untouched.id) not in report
    assert written.version == 1


def test_events_from_before_signing_are_held_until_the_owner_seals_them_once(tamper):
    legacy = uuid.uuid4()
    opened = {"account_id": str(legacy), "owner": "Old Timer", "currency": "EUR", "initial_balance": 40,
              "schema_version": 2}  # fmt: skip
    tamper(legacy, "Opened", opened, signed=False)
    tamper(legacy, "Deposited", {"amount": 2, "source": "s", "schema_version": 2}, signed=False)
    report, found = verify()
    assert found and "it is not signed and no seal covers it" in report
    with pytest.raises(services.AccountOnHold):
        services.deposit(account_id=legacy, amount=1, source="cash")
    out = io.StringIO()
    call_command("seal_event_store", stdout=out)
    assert Seal.objects.get(aggregate_id=legacy).version == 2
    after = services.deposit(account_id=legacy, amount=1, source="cash")
    assert (after.balance, after.version) == (43, 3)
    report, found = verify()
    assert str(legacy) not in report
    with pytest.raises(CommandError, match="already sealed"):
        call_command("seal_event_store", stdout=io.StringIO())


def dashboard():
    client = Client()
    client.force_login(UserFactory(role="supervisor"))
    return client.get(reverse("accounts:dashboard")).content.decode()


def test_the_dashboard_shows_what_the_last_run_found_and_names_the_accounts(tamper):
    assert "has not been checked yet" in dashboard() or "no problem found" in dashboard()
    account = AccountFactory(owner="Forged Upon", initial_deposit=10)
    tamper(account.id, "Deposited", {"amount": 10**8, "source": "forged", "schema_version": 2}, signed=False)
    verify()
    shown = dashboard()
    assert "found 1 problem" in shown and "Forged Upon</a>: 1 finding" in shown
    assert "it is not signed and no seal covers it" in shown


def test_a_digest_catches_an_event_moved_to_another_day_even_signed_again(tmp_path):
    account = AccountFactory(initial_deposit=10)
    services.deposit(account_id=account.id, amount=1, source="cash")
    today = datetime.datetime.now(datetime.UTC).date()
    kept = tmp_path / "today.json"
    call_command("log_digest", "--date", today.isoformat(), "--out", str(kept), stderr=io.StringIO())
    without_trigger("events_no_update", "UPDATE events SET created_at = created_at - interval '1 day' "
                    "WHERE aggregate_id = %s AND version = 1", [account.id])  # fmt: skip
    resign(account.id)
    report, found = verify("--digest", str(kept))
    assert found and f"{today}: {account.id} versions 1..2" in report and "(versions 2..2" in report


@pytest.mark.parametrize(
    "args, message",
    [
        (["--since", "12"], "--since takes TRANSACTION:EVENT"),
        (["--since", "1:9999999999999999999"], "--since takes TRANSACTION:EVENT"),  # past a bigint
        (["--since", "x:5"], "--since takes TRANSACTION:EVENT"),
        (["--digest", "/nonexistent/digest.json"], "No such file or directory"),
    ],
)
def test_bad_arguments_are_refused_with_a_message_and_nothing_is_checked(args, message):
    runs = IntegrityRun.objects.count()
    with pytest.raises(CommandError, match=message):
        call_command("verify_event_store", *args, stdout=io.StringIO())
    assert IntegrityRun.objects.count() == runs


@pytest.mark.parametrize("day", ["2026-13-01", "yesterday", ""])
def test_log_digest_refuses_a_day_it_cannot_read(day):
    with pytest.raises(CommandError, match="--date takes a day as YYYY-MM-DD"):
        call_command("log_digest", "--date", day, stdout=io.StringIO())
