"""Operating the projections while the bank works: rebuilds under load, killed runners, commands."""

import datetime
import io
import signal
import threading
import time

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Max, Min

from accounts import services
from accounts.domain import DomainError
from accounts.models import Account, DailyStatement
from accounts.projections import accounts as account_projection
from accounts.projections import bank_totals, daily_statements
from eventstore import projections
from eventstore.management.commands.run_projections import KEEPALIVES, keep_alive
from eventstore.models import Event, Snapshot
from eventstore.store import EventStore
from tests.factories import AccountFactory
from tests.support import manage, run_threads, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(autouse=True)
def read_models_match_the_log():
    """Django empties read-model tables between transactional tests, never the log: rebuild first."""
    projections.rebuild(account_projection)
    projections.rebuild(daily_statements)


def test_rebuilds_while_four_tellers_work_end_equal_to_replay():
    accounts = [AccountFactory(initial_deposit=50_000) for _ in range(4)]
    stop, errors = threading.Event(), []

    def teller(index):
        for n in range(1, 10_000):
            if stop.is_set() and n > 20:
                return
            try:
                services.deposit(account_id=accounts[index].id, amount=100 + n, source="cash")
                services.transfer(from_account_id=accounts[index].id,
                                  to_account_id=accounts[(index + 1) % 4].id, amount=7, reference="r")  # fmt: skip
            except DomainError as error:  # a rule, not a failure; still none expected here
                errors.append(error)

    def rebuild_repeatedly(_):
        try:
            for _ in range(2):
                assert projections.rebuild(account_projection, chunk=5_000)
                assert projections.rebuild(daily_statements, chunk=5_000)
                projections.catch_up(daily_statements)
        finally:
            stop.set()

    run_threads(lambda index: teller(index) if index < 4 else rebuild_repeatedly(index), 5)
    while projections.catch_up(daily_statements):
        pass
    assert errors == []
    assert projections.verify(account_projection) == []
    assert projections.verify(daily_statements) == []
    assert sum(a.balance for a in Account.objects.filter(account_id__in=[a.id for a in accounts])) > 200_000


def test_a_killed_runner_restarts_where_its_last_batch_committed():
    AccountFactory.create_batch(30)
    projections.ProjectionCheckpoint.objects.filter(name="daily_statements").delete()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE account_daily_statement")
    runner = manage("run_projections", "--batch", "5", "--poll", "0.2")
    wait_for(runner, "daily_statements: applied 5 events")
    runner.send_signal(signal.SIGKILL)
    runner.wait(timeout=30)
    partly = projections.checkpoint("daily_statements").events_applied
    assert partly >= 5

    again = manage("run_projections", "--once")
    assert again.wait(timeout=60) == 0, again.stdout.read()
    assert projections.verify(daily_statements) == []
    applied = projections.checkpoint("daily_statements").events_applied
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM events")
        assert applied == cursor.fetchone()[0]  # every event once: none twice, none skipped


def test_a_killed_rebuild_resumes_and_ends_equal_to_replay():
    AccountFactory.create_batch(200)
    rebuild = manage("rebuild_projections", "accounts", "--chunk", "2")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        interrupted = projections.ProjectionCheckpoint.objects.filter(name="accounts__rebuild").first()
        if interrupted and interrupted.events_applied >= 20:
            break
        time.sleep(0.05)
    rebuild.send_signal(signal.SIGKILL)
    rebuild.wait(timeout=30)
    assert projections.ProjectionCheckpoint.objects.get(name="accounts__rebuild").events_applied >= 20
    out = io.StringIO()
    call_command("rebuild_projections", "accounts", "--chunk", "5000", stdout=out)
    assert "rebuilt and swapped in" in out.getvalue()
    assert projections.verify(account_projection) == []


def test_two_runners_one_works_the_other_waits_then_takes_over():
    AccountFactory()
    first = manage("run_projections", "--poll", "0.2")
    wait_for(first, "running daily_statements")
    second = manage("run_projections", "--poll", "0.2")
    wait_for(second, "waiting: another runner holds daily_statements")
    AccountFactory(initial_deposit=5)
    time.sleep(1)
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0
    assert "stopped" in first.stdout.read()
    wait_for(second, "running daily_statements")
    account = AccountFactory(initial_deposit=6)
    deadline = time.monotonic() + 20
    while not projections.checkpoint("daily_statements").event_id >= _last_event_id() and time.monotonic() < deadline:
        time.sleep(0.1)
    second.send_signal(signal.SIGINT)
    assert second.wait(timeout=30) == 0
    assert projections.verify(daily_statements) == []
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM events")
        assert projections.checkpoint("daily_statements").events_applied == cursor.fetchone()[0]
    assert DailyStatement.objects.get(account_id=account.id).closing_balance == 6  # projected after the takeover


@pytest.mark.slow
def test_a_killed_runner_hands_over_to_the_waiting_one_and_every_event_is_applied_exactly_once():
    AccountFactory()
    first = manage("run_projections", "--poll", "0.2", "--batch", "3")
    second = None
    accounts, done = [AccountFactory(initial_deposit=1) for _ in range(3)], threading.Event()

    def deposit_all_along():
        while not done.is_set():
            for account in accounts:
                services.deposit(account_id=account.id, amount=1, source="cash")

    depositing = threading.Thread(target=deposit_all_along)
    try:
        wait_for(first, "running daily_statements")
        second = manage("run_projections", "--poll", "0.2", "--batch", "3")
        wait_for(second, "waiting: another runner holds daily_statements")
        depositing.start()
        time.sleep(1)
        first.send_signal(signal.SIGKILL)  # mid-batch, most likely: no chance to release anything
        assert first.wait(timeout=30) == -signal.SIGKILL
        # Both projections, though batches for the first one it takes keep coming the while.
        wait_for(second, "running daily_statements", timeout=90)
        threading.Thread(target=second.stdout.read, daemon=True).start()  # its log, read so that it never blocks
        time.sleep(1)
    except BaseException:
        if second is not None:
            second.kill()
        raise
    finally:
        done.set()
        if depositing.is_alive():
            depositing.join(timeout=60)
        first.kill()
    assert second is not None
    try:
        deadline, last = time.monotonic() + 60, _last_event_id()
        while time.monotonic() < deadline and any(
            projections.checkpoint(name).event_id < last for name in ("daily_statements", "bank_totals")
        ):
            time.sleep(0.1)
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    finally:
        second.kill()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM events")
        in_log = cursor.fetchone()[0]
    for name in ("daily_statements", "bank_totals"):  # every event once: none twice, none skipped
        assert projections.checkpoint(name).events_applied == in_log
    assert projections.verify(daily_statements) == []
    assert projections.verify(bank_totals) == []


def test_the_runner_asks_the_server_to_probe_its_connection_so_a_dead_hosts_locks_are_freed():
    keep_alive(connection)
    with connection.cursor() as cursor:
        cursor.execute("SELECT inet_client_addr() IS NULL")  # a Unix socket: the server ignores keepalives
        over_a_socket = cursor.fetchone()[0]
        shown = {}
        for name in KEEPALIVES:
            cursor.execute(f"SHOW {name}")
            shown[name] = cursor.fetchone()[0].removesuffix("s")
    assert shown == ({name: "0" for name in KEEPALIVES} if over_a_socket else KEEPALIVES)


def _last_event_id():
    with connection.cursor() as cursor:
        cursor.execute("SELECT max(id) FROM events")
        return cursor.fetchone()[0]


def test_verify_projections_reports_drift_and_exits_non_zero():
    account = AccountFactory(initial_deposit=100)
    call_command("run_projections", "--once", stdout=io.StringIO())
    out = io.StringIO()
    call_command("verify_projections", stdout=out)
    assert "accounts: ok" in out.getvalue() and "daily_statements: ok" in out.getvalue()
    Account.objects.filter(account_id=account.id).update(status="frozen")
    out = io.StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("verify_projections", "accounts", stdout=out)
    assert caught.value.returncode == 1
    assert "accounts: DRIFT" in out.getvalue() and str(account.id) in out.getvalue()


def test_verify_event_store_reports_a_dropped_guard():
    out = io.StringIO()
    call_command("verify_event_store", stdout=out)
    assert "event store ok" in out.getvalue()
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER events_no_delete ON events")
    try:
        out = io.StringIO()
        with pytest.raises(CommandError) as caught:
            call_command("verify_event_store", stdout=out)
        assert caught.value.returncode == 1
        assert "guard triggers: missing: events_no_delete" in out.getvalue()
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE TRIGGER events_no_delete BEFORE DELETE ON events "
                "FOR EACH ROW EXECUTE FUNCTION events_reject_change()"
            )


def test_status_snapshots_and_replay_commands():
    account = AccountFactory(initial_deposit=1_000)
    services.withdraw(account_id=account.id, amount=250, reason="ATM")
    out = io.StringIO()
    call_command("projection_status", stdout=out)
    assert "daily_statements" in out.getvalue() and "inline" in out.getvalue()
    out = io.StringIO()
    call_command("take_snapshots", str(account.id), stdout=out)
    assert "snapshot at version 2" in out.getvalue()
    out = io.StringIO()
    call_command("replay_account", str(account.id), "--version", "1", stdout=out)
    assert "10.00 EUR" in out.getvalue() and "Withdrawn" not in out.getvalue()
    with pytest.raises(CommandError, match="did not exist"):
        call_command("replay_account", str(account.id), "--as-of", "2001-01-01T00:00:00")
    with pytest.raises(CommandError, match="give account ids, or --all"):
        call_command("take_snapshots")


def test_generated_histories_are_valid_projected_named_like_people_and_spread_over_the_days():
    out, started = io.StringIO(), datetime.datetime.now(datetime.UTC)
    call_command("generate_events", "--accounts", "20", "--events", "600", "--seed", "7", "--days", "5", stdout=out)
    assert "wrote" in out.getvalue()
    call_command("verify_event_store", stdout=io.StringIO())
    assert projections.verify(account_projection) == []
    generated = list(Account.objects.all())
    assert len(generated) == 20 and all(a.balance >= 0 for a in generated)
    for account in generated[:5]:
        assert services.get_account(account.account_id).balance == account.balance
    owners = {account.owner for account in generated}
    assert len(owners) == 20 and all(" " in owner for owner in owners)  # a first name and a last name, each its own
    moments = Event.objects.aggregate(first=Min("created_at"), last=Max("created_at"))
    assert started - datetime.timedelta(days=5) <= moments["first"] < started - datetime.timedelta(days=4)
    assert moments["last"] > started - datetime.timedelta(days=1)
    with pytest.raises(CommandError):
        call_command("generate_events", "--accounts", "5", "--events", "2")


def test_generated_histories_carry_the_snapshots_their_commands_would_have_taken(settings):
    settings.EVENTSTORE_SNAPSHOT_EVERY = 100
    call_command("generate_events", "--accounts", "1", "--events", "250", "--seed", "5", stdout=io.StringIO())
    account = Account.objects.get()
    assert account.version >= 200
    taken = sorted(Snapshot.objects.filter(aggregate_id=account.account_id).values_list("version", flat=True))
    assert taken == list(range(100, account.version + 1, 100))
    call_command("verify_event_store", stdout=io.StringIO())  # every snapshot's MAC and state against replay
    past = services.get_account(account.account_id, version=150)
    assert past == services.get_account(account.account_id, version=150, from_events_only=True)


def test_generated_owners_come_from_several_countries_accents_included():
    call_command("generate_events", "--accounts", "200", "--events", "200", "--seed", "3", stdout=io.StringIO())
    owners = list(Account.objects.values_list("owner", flat=True))
    assert any(not owner.isascii() for owner in owners)
    assert len(set(owners)) > 190


@pytest.mark.parametrize(
    "moment, message",
    [
        ("2026-02-30T10:00:00", "--as-of: Enter a date and time"),  # well formed, but February has no 30th
        ("9999-12-31T23:59:59-14:00", "--as-of: .* is outside the calendar"),  # year 10000 in UTC
        ("0001-01-01T00:00:00+14:00", "--as-of: .* is outside the calendar"),  # year 0 in UTC
        ("yesterday", "--as-of: Enter a date and time"),
    ],
)
def test_replay_account_refuses_a_moment_it_cannot_place_with_a_command_error(moment, message):
    account = AccountFactory()
    with pytest.raises(CommandError, match=message):
        call_command("replay_account", str(account.id), "--as-of", moment, stdout=io.StringIO())


def test_replay_account_reads_an_offset_postgresql_cannot_store_as_that_moment_in_utc():
    account = AccountFactory(initial_deposit=1_000)
    opened = EventStore().load(account.id)[0].created_at
    plus_sixteen = datetime.timezone(datetime.timedelta(hours=16))
    out = io.StringIO()
    after = (opened + datetime.timedelta(minutes=1)).astimezone(plus_sixteen).isoformat()
    call_command("replay_account", str(account.id), "--as-of", after, stdout=out)
    assert "10.00 EUR" in out.getvalue()
    # An hour before the opening; 15 hours after it if the offset were dropped.
    before = (opened - datetime.timedelta(hours=1)).astimezone(plus_sixteen).isoformat()
    with pytest.raises(CommandError, match="did not exist"):
        call_command("replay_account", str(account.id), "--as-of", before)


@pytest.mark.parametrize("version", ["0", "-1", "2147483648", "99999999999999999999"])
def test_replay_account_refuses_a_version_outside_postgresql_integers_with_a_command_error(version):
    account = AccountFactory()
    with pytest.raises(CommandError, match="--version must be a whole number from 1 to 2147483647"):
        call_command("replay_account", str(account.id), "--version", version, stdout=io.StringIO())


def test_replay_account_accepts_the_largest_version_and_shows_the_account_as_it_is_now():
    account = AccountFactory(initial_deposit=1_000)
    services.withdraw(account_id=account.id, amount=250, reason="ATM")
    out = io.StringIO()
    call_command("replay_account", str(account.id), "--version", "2147483647", stdout=out)
    assert "7.50 EUR" in out.getvalue() and "version  2" in out.getvalue()


@pytest.mark.parametrize("command", ["verify_projections", "verify_event_store"])
@pytest.mark.parametrize("show", ["-1", "2147483648", "many"])
def test_verify_commands_refuse_a_show_count_outside_0_to_2147483647_with_a_command_error(command, show):
    with pytest.raises(CommandError, match="--show: must be a whole number from 0 to 2147483647"):
        call_command(command, "--show", show, stdout=io.StringIO())


def temp_buffers():
    with connection.cursor() as cursor:
        cursor.execute("SHOW temp_buffers")
        return cursor.fetchone()[0]


def test_verify_projections_gives_its_replay_the_temporary_memory_set_unless_the_session_already_has_some(settings):
    settings.EVENTSTORE_VERIFY_TEMP_BUFFERS = "64MB"
    AccountFactory(initial_deposit=1)
    connection.close()  # a session of its own, as the command has when an operator runs it
    call_command("verify_projections", stdout=io.StringIO())
    assert temp_buffers() == "64MB"
    connection.close()
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE used (n int)")  # past this, the server refuses the change
    call_command("verify_projections", stdout=io.StringIO())
    assert temp_buffers() == "8MB"


def test_verify_projections_says_which_setting_the_server_refused(settings):
    settings.EVENTSTORE_VERIFY_TEMP_BUFFERS = "a lot"
    connection.close()
    with pytest.raises(CommandError, match="EVENTSTORE_VERIFY_TEMP_BUFFERS is 'a lot', which the server refuses"):
        call_command("verify_projections", stdout=io.StringIO())


def test_verify_projections_showing_one_difference_still_reports_the_drift():
    account = AccountFactory(initial_deposit=100)
    Account.objects.filter(account_id=account.id).update(status="frozen")
    out = io.StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("verify_projections", "accounts", "--show", "1", stdout=out)
    assert caught.value.returncode == 1
    assert "accounts: DRIFT" in out.getvalue()


@pytest.mark.parametrize(
    "args, message",
    [
        (["replay_account", "00000000-0000-0000-0000-000000000000", "--as-of", "2026-02-30T10:00:00"],
         "Enter a date and time"),
        (["replay_account", "00000000-0000-0000-0000-000000000000", "--version", "2147483648"],
         "--version must be a whole number from 1 to 2147483647"),
        (["verify_projections", "--show", "-1"], "--show: must be a whole number from 0 to 2147483647"),
        (["verify_event_store", "--show", "-1"], "--show: must be a whole number from 0 to 2147483647"),
    ],
)  # fmt: skip
def test_bad_command_input_from_the_shell_exits_non_zero_with_a_message_not_a_traceback(args, message):
    process = manage(*args)
    output, _ = process.communicate(timeout=60)
    assert process.returncode != 0
    assert message in output
    assert "Traceback" not in output
