"""Events a projection cannot apply: projections stop at them, and say so; verifiers report them and go on."""

import datetime
import io
import json
import logging
import signal
import time
import uuid
from collections import Counter

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from psycopg import sql

from accounts import services
from accounts.models import Account, DailyStatement
from accounts.projections import accounts as account_projection
from accounts.projections import daily_statements
from eventstore import projections
from eventstore.models import Event
from tests.factories import AccountFactory
from tests.support import manage, settle, wait_for, without_trigger

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def read_models_match_the_log():
    """Django empties read-model tables and checkpoints between transactional tests, never the log: rebuild first."""
    projections.rebuild(account_projection)
    projections.rebuild(daily_statements)


def catch_up_everything(projection):
    settle()
    while projections.catch_up(projection):
        pass


def event_id(account_id, version):
    return Event.objects.get(aggregate_id=account_id, version=version).id


def stop_line(name, event, account_id, version, event_type, reason):
    return f"{name}: stopped at event {event} (BankAccount {account_id} v{version} {event_type}): {reason}"


# --- catch_up -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, reason",
    [
        ({}, "KeyError: 'amount'"),  # schema 1: the upcaster finds no amount
        ({"schema_version": 2}, "KeyError: 'amount'"),  # the projection finds none
        ({"amount": 10**40, "schema_version": 2}, "ValueError: the amount 1000"),  # past any balance
    ],
    ids=["unreadable", "unappliable", "out of range"],
)
def test_an_event_the_projection_cannot_apply_stops_it_there_until_it_is_fixed(tamper, data, reason):
    ahead, broken = AccountFactory(initial_deposit=100), AccountFactory(initial_deposit=100)
    services.deposit(account_id=ahead.id, amount=1, source="cash")
    bad = tamper(broken.id, "Deposited", data)
    services.deposit(account_id=ahead.id, amount=2, source="cash")
    settle()

    with pytest.raises(projections.ProjectionStopped) as stopped:
        projections.catch_up(daily_statements)
    line = stop_line("daily_statements", bad, broken.id, 2, "Deposited", reason)
    assert str(stopped.value).startswith(line) and "\n" not in str(stopped.value)
    assert (stopped.value.projection, stopped.value.event_id, stopped.value.aggregate_id) == (
        "daily_statements",
        bad,
        broken.id,
    )
    assert (stopped.value.version, stopped.value.event_type) == (2, "Deposited")
    assert stopped.value.reason.startswith(reason)
    # The events before it are applied and the checkpoint is just before it; the stop is on record.
    row = projections.checkpoint("daily_statements")
    assert row.event_id == event_id(ahead.id, 2)
    assert row.failed_event_id == bad and row.failure == str(stopped.value).removeprefix("daily_statements: ")
    assert row.failed_at is not None
    assert DailyStatement.objects.get(account_id=ahead.id).closing_balance == 101

    with pytest.raises(projections.ProjectionStopped):  # it stays stopped: nothing is skipped
        projections.catch_up(daily_statements)
    again = projections.checkpoint("daily_statements")
    assert (again.event_id, again.failed_event_id, again.failed_at) == (row.event_id, bad, row.failed_at)

    # The owner repairs the event: the next catch-up goes on and clears the failure.
    without_trigger("events_no_update", "UPDATE events SET event_data = %s WHERE id = %s",
                     [json.dumps({"amount": 5, "schema_version": 2}), bad])  # fmt: skip
    catch_up_everything(daily_statements)
    row = projections.checkpoint("daily_statements")
    assert (row.failed_event_id, row.failure, row.failed_at) == (None, None, None)
    assert DailyStatement.objects.get(account_id=ahead.id).closing_balance == 103
    assert DailyStatement.objects.get(account_id=broken.id).closing_balance == 105
    assert projections.verify(daily_statements) == []


# --- run_projections ------------------------------------------------------------------------


class EventCounts(projections.Projection):
    """Test-only: events per account. It reads no payload, so no payload stops it."""

    name = "test_event_counts"
    tables = ("test_event_counts",)
    aggregate_types = frozenset({"BankAccount"})

    def apply(self, events, tables):
        upsert = sql.SQL(
            "INSERT INTO {} AS t VALUES (%s, %s) "
            "ON CONFLICT (account_id) DO UPDATE SET events = t.events + EXCLUDED.events"
        ).format(sql.Identifier(tables["test_event_counts"]))
        with connection.cursor() as cursor:
            for account_id, count in Counter(event.aggregate_id for event in events).items():
                cursor.execute(upsert.as_string(connection.connection), [account_id, count])


@pytest.fixture
def event_counts(monkeypatch):
    """A second asynchronous projection, registered after daily_statements, for this test only."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE test_event_counts (account_id uuid PRIMARY KEY, events integer NOT NULL)")
    monkeypatch.setitem(projections.registry, EventCounts.name, EventCounts())
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE test_event_counts")


def test_run_projections_once_stops_the_projection_that_cannot_apply_an_event_and_runs_the_others(
    tamper, event_counts, caplog
):
    broken = AccountFactory(initial_deposit=100)
    bad = tamper(broken.id, "Deposited", {})
    later = AccountFactory(initial_deposit=7)
    settle()
    with caplog.at_level(logging.INFO, logger="eventstore.runner"), pytest.raises(SystemExit) as exited:
        call_command("run_projections", "--once")
    assert exited.value.code == 4
    assert [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR] == [
        stop_line(name, bad, broken.id, 2, "Deposited", "KeyError: 'amount'")
        for name in ("daily_statements", "bank_totals")  # both read the amount
    ]
    assert "test_event_counts: applied" in caplog.text
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT account_id, events FROM test_event_counts WHERE account_id = ANY(%s)", [[broken.id, later.id]]
        )
        assert dict(cursor.fetchall()) == {broken.id: 2, later.id: 1}  # past the event daily_statements stopped at
    assert not DailyStatement.objects.filter(account_id=later.id).exists()
    assert projections.checkpoint("daily_statements").failed_event_id == bad


@pytest.mark.slow
def test_a_runner_says_once_that_a_projection_stopped_releases_it_and_keeps_running(tamper):
    broken = AccountFactory(initial_deposit=100)
    bad = tamper(broken.id, "Deposited", {})
    settle()
    runner = manage("run_projections", "--poll", "0.2")
    try:
        lines = wait_for(runner, "stopped at event")
        lines += wait_for(runner, "stopped at event")
        assert {json.loads(line)["message"] for line in lines if "stopped at event" in line} == {
            stop_line(name, bad, broken.id, 2, "Deposited", "KeyError: 'amount'")
            for name in ("daily_statements", "bank_totals")
        }
        for name in ("daily_statements", "bank_totals"):
            assert projections.try_lock_runner(name)  # released while the runner goes on
            projections.unlock_runner(name)
        AccountFactory(initial_deposit=5)  # wakes the runner, which does not try the stopped projection again
        time.sleep(1)
        assert runner.poll() is None
    finally:
        runner.send_signal(signal.SIGTERM)
    assert runner.wait(timeout=30) == 0
    output = "".join(lines) + runner.stdout.read()
    assert output.count("stopped at event") == 2 and "Traceback" not in output  # once per projection


def test_projection_status_shows_a_stopped_projection_with_its_event_and_reason(tamper):
    broken = AccountFactory(initial_deposit=100)
    bad = tamper(broken.id, "Deposited", {})
    with pytest.raises(projections.ProjectionStopped):
        catch_up_everything(daily_statements)
    out = io.StringIO()
    call_command("projection_status", stdout=out)
    (line,) = [line for line in out.getvalue().splitlines() if "FAILED" in line]
    assert line.startswith("daily_statements FAILED: ")
    assert stop_line("", bad, broken.id, 2, "Deposited", "KeyError: 'amount'")[2:] in line


# --- rebuild_projections ----------------------------------------------------------------------


def test_rebuild_stops_at_an_event_it_cannot_apply_and_resumes_from_there_once_it_is_fixed(tamper):
    first = AccountFactory(initial_deposit=100)
    broken = AccountFactory(initial_deposit=100)
    bad = tamper(broken.id, "Withdrawn", {"amount": 500, "schema_version": 2})  # more than the balance
    AccountFactory(initial_deposit=9)
    settle()  # so that the steps, not the swap, meet the bad event
    with pytest.raises(CommandError) as caught:
        call_command("rebuild_projections", "accounts", "--chunk", "100", stdout=io.StringIO(), stderr=io.StringIO())
    message = str(caught.value)  # the reason: the balance would go below zero (the rules or the table's CHECK)
    assert message.startswith(stop_line("accounts", bad, broken.id, 2, "Withdrawn", "")) and "\n" not in message
    row = projections.ProjectionCheckpoint.objects.get(name="accounts__rebuild")
    assert (row.event_id, row.failed_event_id) == (event_id(broken.id, 1), bad)
    with connection.cursor() as cursor:
        cursor.execute("SELECT balance FROM account_read_model__rebuild WHERE account_id = %s", [first.id])
        assert cursor.fetchone() == (100,)

    without_trigger("events_no_delete", "DELETE FROM events WHERE id = %s", [bad])  # the owner's repair
    resumed = projections.Progress()
    assert projections.rebuild(account_projection, progress=resumed)
    assert resumed.total == Event.objects.filter(id__gt=row.event_id).count()  # resumed, not started over
    assert projections.verify(account_projection) == []


def test_rebuild_all_reads_the_log_once_and_swaps_in_the_projections_an_event_did_not_stop(tamper, monkeypatch):
    broken = AccountFactory(initial_deposit=100)
    bad = tamper(broken.id, "Deposited", {})  # every projection of accounts reads the amount; approvals never see it
    AccountFactory(initial_deposit=7)
    settle()
    streamed = []

    def counted(original):
        def reading(*args, **kwargs):
            for batch in original(*args, **kwargs):
                streamed.extend(event.id for event in batch)
                yield batch

        return reading

    for reader in ("stream", "stream_ahead"):
        monkeypatch.setattr(projections, reader, counted(getattr(projections, reader)))
    err = io.StringIO()
    stopped = "accounts: stopped at event .*; daily_statements: stopped at event .*; bank_totals: stopped at event"
    with pytest.raises(CommandError, match=stopped):
        call_command("rebuild_projections", "--all", stdout=io.StringIO(), stderr=err)
    # Once quickly, then once carefully (savepoints) to find the event refused; never once per projection.
    assert set(Counter(streamed).values()) == {2}
    assert not projections.ProjectionCheckpoint.objects.filter(name="approvals__rebuild").exists()  # swapped in
    assert projections.ProjectionCheckpoint.objects.filter(name="daily_statements__rebuild").exists()  # to resume
    without_trigger("events_no_delete", "DELETE FROM events WHERE id = %s", [bad])  # the owner's repair
    streamed.clear()
    call_command("rebuild_projections", "--all", stdout=io.StringIO(), stderr=io.StringIO())
    assert not projections.ProjectionCheckpoint.objects.filter(name__endswith="__rebuild").exists()  # all resumed
    assert streamed and len(streamed) == len(set(streamed))  # with nothing refused, read once


def test_an_event_only_the_swap_meets_undoes_the_swap_and_is_recorded_on_the_rebuild(tamper, monkeypatch):
    broken = AccountFactory(initial_deposit=100)
    settle()
    original, planted = projections._step_together, []

    def step_then_plant(*args, **kwargs):
        read, stops = original(*args, **kwargs)
        if not planted and read < kwargs["limit"]:  # the last step: the swap comes next
            planted.append(tamper(broken.id, "Withdrawn", {"amount": 500, "schema_version": 2}))
        return read, stops

    monkeypatch.setattr(projections, "_step_together", step_then_plant)
    with pytest.raises(projections.ProjectionStopped):
        projections.rebuild(account_projection)
    row = projections.ProjectionCheckpoint.objects.get(name="accounts__rebuild")
    assert row.failed_event_id == planted[0] and row.failure.startswith("stopped at event")
    assert Account.objects.get(account_id=broken.id).balance == 100  # the live table was not swapped


# --- verify_projections ---------------------------------------------------------------------


def test_verify_projections_reports_an_event_it_cannot_apply_and_goes_on_to_find_drift(tamper):
    broken = AccountFactory(initial_deposit=100)
    bad = tamper(broken.id, "Withdrawn", {"amount": 500, "schema_version": 2})
    drifted = AccountFactory(initial_deposit=100)  # after the bad event in the log
    catch_up_everything(daily_statements)
    Account.objects.filter(account_id=drifted.id).update(balance=999)
    DailyStatement.objects.filter(account_id=drifted.id).update(event_count=7)

    out = io.StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("verify_projections", stdout=out)
    assert caught.value.returncode == 1
    lines = out.getvalue().splitlines()
    assert any(line.startswith(stop_line("accounts", bad, broken.id, 2, "Withdrawn", "")) for line in lines)
    assert any(line.startswith("accounts: account_read_model: missing") and str(drifted.id) in line for line in lines)
    assert any(
        line.startswith("daily_statements: account_daily_statement: ") and str(drifted.id) in line for line in lines
    )
    assert "accounts: DRIFT" in lines and "daily_statements: DRIFT" in lines
    assert str(caught.value) == "4 rows differ from a replay of the log; 1 event could not be applied."

    findings = projections.verify(account_projection)
    assert [(f.event_id, f.aggregate_id) for f in findings if isinstance(f, projections.ProjectionStopped)] == [
        (bad, broken.id)
    ]


def test_verify_projections_show_0_prints_no_example_and_still_fails_with_the_count():
    account = AccountFactory(initial_deposit=100)
    Account.objects.filter(account_id=account.id).update(status="frozen")
    out = io.StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("verify_projections", "accounts", "--show", "0", stdout=out)
    assert caught.value.returncode == 1
    assert str(caught.value) == "2 rows differ from a replay of the log."
    assert out.getvalue().splitlines() == ["accounts: DRIFT"]


# --- verify_event_store ---------------------------------------------------------------------


def test_verify_event_store_finds_an_event_dated_before_the_version_before_it_even_with_show_0(tamper):
    aggregate, now = uuid.uuid4(), datetime.datetime.now(datetime.UTC)
    opened = {"owner": "Early Bird", "currency": "EUR", "initial_balance": 0, "schema_version": 2}
    tamper(aggregate, "Opened", opened, version=1, created_at=now)
    with connection.cursor() as cursor:  # the append guard refuses it even to the owner
        cursor.execute("ALTER TABLE events DISABLE TRIGGER events_append_guard")
        try:
            tamper(aggregate, "Deposited", {"amount": 1, "schema_version": 2}, version=2,
                   created_at=now - datetime.timedelta(hours=1))  # fmt: skip
        finally:
            cursor.execute("ALTER TABLE events ENABLE TRIGGER events_append_guard")

    out = io.StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("verify_event_store", stdout=out)
    assert caught.value.returncode == 1
    assert "events dated before the version they follow: 1 FOUND" in out.getvalue()
    assert any(line.startswith("events dated before the version they follow: ") and str(aggregate) in line
               for line in out.getvalue().splitlines())  # fmt: skip

    out = io.StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("verify_event_store", "--show", "0", stdout=out)
    assert caught.value.returncode == 1
    assert str(caught.value) == "1 finding in the event store."
    assert str(aggregate) not in out.getvalue() and "event store ok" not in out.getvalue()
