"""The bank's projections: the account read model, the daily statements and the bank's totals."""

import datetime
import uuid

import pytest
from django.db import OperationalError, connection

from accounts import services
from accounts.models import Account, BankTotal, DailyStatement
from accounts.projections import accounts as account_projection
from accounts.projections import bank_totals, daily_statements
from eventstore import projections
from eventstore.store import EventStore
from tests.factories import AccountFactory, approved
from tests.support import caught_up, resign, settle

pytestmark = pytest.mark.django_db(transaction=True)
store = EventStore()


@pytest.fixture(autouse=True)
def read_models_match_the_log():
    """Between transactional tests Django empties the read-model tables, never the append-only
    log: start each test from read models rebuilt from the whole log, as an operator would."""
    projections.rebuild(account_projection)
    projections.rebuild(daily_statements)
    projections.rebuild(bank_totals)


def backdate(account_id, days_ago_by_version):
    """Spread an account's events over past days, as a long-lived account's would be."""
    now = datetime.datetime.now(datetime.UTC)
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE events DISABLE TRIGGER events_no_update")
        try:
            for version, days in days_ago_by_version.items():
                cursor.execute(
                    "UPDATE events SET created_at = %s WHERE aggregate_id = %s AND version = %s",
                    [now - datetime.timedelta(days=days), account_id, version],
                )
        finally:
            cursor.execute("ALTER TABLE events ENABLE TRIGGER events_no_update")
    resign(account_id)


def catch_up_all():
    settle()
    while projections.catch_up(daily_statements, limit=7):
        pass


def test_daily_statements_agree_with_replay_day_by_day():
    account = AccountFactory(initial_deposit=10_000)
    other = AccountFactory()
    services.deposit(account_id=account.id, amount=2_500, source="salary")
    services.withdraw(account_id=account.id, amount=1_000, reason="rent")
    services.transfer(from_account_id=account.id, to_account_id=other.id, amount=500, reference="r")
    services.deposit(account_id=account.id, amount=40, source="cash")
    backdate(account.id, {1: 3, 2: 3, 3: 1, 4: 1})  # version 5 stays today
    catch_up_all()

    rows = list(DailyStatement.objects.filter(account_id=account.id).order_by("day"))
    events = store.load(account.id)
    assert [r.event_count for r in rows] == [2, 2, 1]
    previous_closing = 0
    for row in rows:
        end_of_day = datetime.datetime.combine(row.day, datetime.time.max, tzinfo=datetime.UTC)
        assert row.closing_balance == services.get_account(account.id, as_of=end_of_day).balance
        assert row.opening_balance == previous_closing
        assert row.closing_balance - row.opening_balance == row.credits - row.debits
        assert row.event_count == sum(1 for e in events if e.created_at.date() == row.day)
        assert row.currency == "EUR"
        previous_closing = row.closing_balance
    assert (rows[1].credits, rows[1].debits) == (0, 1_500)


def row_of(account_id):
    row = Account.objects.get(account_id=account_id)
    return (row.owner, row.currency, row.balance, row.status, row.version)


def test_every_command_leaves_the_account_row_as_replay_makes_it_dated_by_its_events():
    account = AccountFactory(initial_deposit=1_000)
    other = AccountFactory(initial_deposit=0)
    services.deposit(account_id=account.id, amount=250, source="cash")
    services.transfer(from_account_id=account.id, to_account_id=other.id, amount=300, reference="rent")
    services.freeze(account_id=account.id, reason="check")
    approved("unfreeze", account_id=account.id, reason="checked")
    services.withdraw(account_id=account.id, amount=950, reason="cash")
    approved("close_account", account_id=account.id, reason="moved away")
    for each in (account, other):
        replayed = services.get_account(each.id, from_events_only=True)
        history = store.load(each.id)
        assert row_of(each.id) == (
            replayed.owner,
            replayed.currency,
            replayed.balance,
            replayed.status,
            replayed.version,
        )
        row = Account.objects.get(account_id=each.id)
        assert (row.opened_at, row.last_activity_at) == (history[0].created_at, history[-1].created_at)
    assert row_of(account.id)[2:] == (0, "closed", 7)
    assert projections.verify(account_projection) == []


def test_an_event_written_outside_the_command_unit_is_missed_by_the_row_never_counted_twice(tamper):
    account = AccountFactory(initial_deposit=100)
    tamper(account.id, "Deposited", {"amount": 5, "source": "outside", "schema_version": 2})
    services.deposit(account_id=account.id, amount=7, source="cash")
    assert row_of(account.id)[2:] == (107, "active", 3)
    account_projection.apply(store.load(account.id, after_version=2), account_projection.live())  # again: no change
    assert row_of(account.id)[2:] == (107, "active", 3)
    drift = projections.verify(account_projection)
    assert {(d.kind, d.row[0], d.row[3]) for d in drift} == {
        ("missing", account.id, 112),
        ("unexpected", account.id, 107),
    }
    projections.rebuild(account_projection)
    assert row_of(account.id)[2:] == (112, "active", 3)


@pytest.mark.parametrize(
    "event_type, data, reason",
    [
        ("Opened", {"account_id": "x", "owner": "Eve", "currency": "EUR", "initial_balance": 9, "schema_version": 2},
         "ValueError: an account opens only once, at version 1, not at version 2"),
        ("Renamed", {"owner": "Eve"}, "ValueError: Renamed is not a bank account event"),
    ],
)  # fmt: skip
def test_the_account_row_refuses_what_the_fold_refuses_even_in_a_later_batch(tamper, event_type, data, reason):
    account = AccountFactory(initial_deposit=100)
    tamper(account.id, event_type, data)
    opening, bad = store.load(account.id)
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE accounts_copy (LIKE account_read_model INCLUDING ALL)")
    try:
        account_projection.apply([opening], {"account_read_model": "accounts_copy"})
        with pytest.raises(ValueError) as refused:  # version 2 in a batch of its own, as a rebuild may give it
            account_projection.apply([bad], {"account_read_model": "accounts_copy"})
        assert f"{type(refused.value).__name__}: {refused.value}".startswith(reason)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE accounts_copy")


def test_catch_up_applies_each_event_once_and_remembers_where_it_stopped():
    account = AccountFactory(initial_deposit=100)
    catch_up_all()
    before = list(DailyStatement.objects.filter(account_id=account.id).values())
    assert projections.catch_up(daily_statements) == 0
    assert list(DailyStatement.objects.filter(account_id=account.id).values()) == before
    services.deposit(account_id=account.id, amount=5, source="cash")
    assert projections.catch_up(daily_statements) >= 1
    assert DailyStatement.objects.get(account_id=account.id).closing_balance == 105
    assert projections.verify(daily_statements) == []


def test_a_batch_that_loses_its_connection_half_way_leaves_rows_and_checkpoint_as_they_were(monkeypatch):
    for _ in range(3):
        AccountFactory(initial_deposit=100)
    catch_up_all()
    AccountFactory(initial_deposit=7)
    AccountFactory(initial_deposit=8)
    settle()
    checkpoint = projections.checkpoint("daily_statements")
    original = daily_statements.apply
    calls = []

    def apply_then_crash(events, tables):
        original(events, tables)
        calls.append(len(events))
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(daily_statements, "apply", apply_then_crash)
    with pytest.raises(OperationalError):  # not the events' fault: it propagates, and stops nothing
        projections.catch_up(daily_statements)
    monkeypatch.setattr(daily_statements, "apply", original)
    after = projections.checkpoint("daily_statements")
    assert calls and (after.event_id, after.events_applied) == (checkpoint.event_id, checkpoint.events_applied)
    assert (after.failed_event_id, after.failure, after.failed_at) == (None, None, None)
    catch_up_all()
    assert projections.verify(daily_statements) == []


def test_verify_finds_a_row_changed_behind_the_projections_back():
    account = AccountFactory(initial_deposit=100)
    catch_up_all()
    assert projections.verify(account_projection) == []
    Account.objects.filter(account_id=account.id).update(balance=999)
    drifts = projections.verify(account_projection)
    assert {d.kind for d in drifts} == {"missing", "unexpected"}
    assert any(d.row[0] == account.id and 999 in d.row for d in drifts)


def test_verify_counts_every_row_the_table_lacks_or_holds_beyond_replay_and_shows_at_most_the_limit():
    accounts = [AccountFactory(initial_deposit=n) for n in (10, 20, 30)]
    Account.objects.filter(account_id__in=[account.id for account in accounts[:2]]).delete()
    now = datetime.datetime.now(datetime.UTC)
    Account.objects.create(account_id=uuid.uuid4(), owner="Ghost", currency="EUR", balance=0, status="active",
                           version=1, opened_at=now, last_activity_at=now)  # fmt: skip
    everything = projections.verify(account_projection)
    assert {drift.row[0] for drift in everything if drift.kind == "missing"} == {account.id for account in accounts[:2]}
    assert [drift.row[1] for drift in everything if drift.kind == "unexpected"] == ["Ghost"]
    assert everything.total == 3
    one_each = projections.verify(account_projection, limit=1)
    assert sorted(drift.kind for drift in one_each) == ["missing", "unexpected"] and one_each.total == 3
    counted = projections.verify(account_projection, limit=0)
    assert counted == [] and counted.total == 3


def test_rebuild_swaps_in_tables_equal_to_replay_and_keeps_the_names():
    for n in range(5):
        account = AccountFactory(initial_deposit=100 * n)
        services.deposit(account_id=account.id, amount=1, source="cash")
    catch_up_all()
    Account.objects.filter(account_id=account.id).update(balance=12345)  # drift the rebuild repairs
    before = connection.introspection.get_constraints(connection.cursor(), "account_read_model").keys()
    assert projections.rebuild(account_projection, chunk=3)
    assert projections.rebuild(daily_statements, chunk=3)
    assert projections.verify(account_projection) == []
    assert projections.verify(daily_statements) == []
    assert Account.objects.get(account_id=account.id).balance == 401
    assert connection.introspection.get_constraints(connection.cursor(), "account_read_model").keys() == before


def test_an_interrupted_rebuild_resumes_where_it_stopped():
    for n in range(6):
        AccountFactory(initial_deposit=n)
    assert projections.rebuild(daily_statements, chunk=2, steps=1) is False
    resumed = projections.Progress()
    assert projections.rebuild(daily_statements, chunk=2, progress=resumed) is True
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM events")
        in_log = cursor.fetchone()[0]
    assert resumed.total == in_log - 2  # the chunk committed before the stop is not counted again
    assert resumed.done == resumed.total  # nor applied again
    assert projections.verify(daily_statements) == []
    assert not projections.ProjectionCheckpoint.objects.filter(name__endswith="__rebuild").exists()


def indexes(table):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, regexp_replace(indexdef, '^.* USING ', '') FROM pg_indexes WHERE tablename = %s", [table]
        )
        return dict(cursor.fetchall())


def test_a_rebuild_writes_its_shadow_with_the_unique_index_only_and_swaps_in_every_index():
    for n in range(4):
        AccountFactory(initial_deposit=n)
    live = indexes("account_read_model")
    assert len(live) > 1  # the lists' and searches' indexes besides the primary key
    assert projections.rebuild(account_projection, chunk=2, steps=1) is False
    # The primary key that the writes find rows by, and no index each write would have to keep.
    assert indexes("account_read_model__rebuild") == {"account_read_model__rebuild_pkey": "btree (account_id)"}
    assert projections.rebuild(account_projection, chunk=2) is True
    assert indexes("account_read_model") == live  # every index, under its own name
    assert projections.verify(account_projection) == []


def test_without_a_refused_event_rebuild_and_verify_take_no_savepoint():
    for n in range(3):
        AccountFactory(initial_deposit=n)
    statements = []

    def record(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    assert projections.rebuild(daily_statements, steps=0) is False  # its checkpoint made (get_or_create's savepoint)
    with connection.execute_wrapper(record):
        assert projections.rebuild(daily_statements, chunk=2)
        assert projections.verify(daily_statements) == []
    assert statements and not [sql for sql in statements if "SAVEPOINT" in sql.upper()]


def test_a_projection_is_given_the_events_metadata_only_if_it_says_it_reads_it(monkeypatch):
    account = AccountFactory(initial_deposit=5)
    original, seen = daily_statements.apply, []

    def apply(events, tables):
        seen.extend(event.metadata for event in events if event.aggregate_id == account.id)
        original(events, tables)

    monkeypatch.setattr(daily_statements, "apply", apply)
    assert projections.rebuild(daily_statements)
    with pytest.raises(LookupError, match="did not read the events' metadata"):
        seen[0].get("correlation_id")  # a mistake said at once, not an empty mapping taken for the truth
    monkeypatch.setattr(daily_statements, "reads_metadata", True)
    for run in (projections.rebuild, projections.verify):
        seen.clear()
        run(daily_statements)
        assert seen == [event.metadata for event in store.load(account.id)]


def test_a_batch_of_statements_with_a_turnover_past_64_bits_is_written_exactly(settings):
    settings.ACCOUNT_AMOUNT_CEILING = 2**64
    big = 2**62
    accounts = [AccountFactory(initial_deposit=0) for _ in range(9)]  # more rows than a command's few
    for account in accounts:
        for _ in range(5):  # the balance stays small; the day's credits pass 2**64
            services.deposit(account_id=account.id, amount=big, source="wire")
            approved("withdraw", account_id=account.id, amount=big, reason="wire")
    assert projections.rebuild(daily_statements)
    days = DailyStatement.objects.filter(account_id__in=[account.id for account in accounts])
    assert sorted((day.credits, day.debits, day.closing_balance) for day in days) == [(5 * big, 5 * big, 0)] * 9
    assert 5 * big > 2**64
    assert projections.verify(daily_statements) == []


def test_a_days_turnover_past_bigint_never_stops_the_statements_projection(settings):
    settings.ACCOUNT_AMOUNT_CEILING = 2**64
    big = 2**62
    account = AccountFactory(initial_deposit=0)
    for _ in range(2):  # the balance stays small; the day's credits pass 2**63
        services.deposit(account_id=account.id, amount=big, source="wire")
        approved("withdraw", account_id=account.id, amount=big, reason="wire")
    catch_up_all()
    (day,) = DailyStatement.objects.filter(account_id=account.id)
    assert (day.credits, day.debits, day.closing_balance, day.event_count) == (2 * big, 2 * big, 0, 5)
    assert day.credits > 2**63 - 1
    assert projections.verify(daily_statements) == []


def totals():
    return {(row.currency, row.status): (row.accounts, row.balance) for row in BankTotal.objects.all()}


def test_the_bank_totals_move_each_account_between_statuses_with_its_money_batch_after_batch():
    caught_up(bank_totals)
    before = totals()
    kept = AccountFactory(initial_deposit=5_000, currency="GBP")
    frozen = AccountFactory(initial_deposit=700, currency="GBP")
    closed = AccountFactory(initial_deposit=300, currency="CHF")
    caught_up(bank_totals)  # the accounts are counted in one batch, what follows in others
    services.freeze(account_id=frozen.id, reason="court order")
    services.deposit(account_id=kept.id, amount=250, source="cash")
    caught_up(bank_totals)
    approved("withdraw", account_id=closed.id, amount=300, reason="emptied")
    approved("close_account", account_id=closed.id, reason="moved abroad")
    caught_up(bank_totals)

    def added(key):
        n, money = totals().get(key, (0, 0))
        was_n, was_money = before.get(key, (0, 0))
        return n - was_n, money - was_money

    assert added(("GBP", "active")) == (1, 5_250)
    assert added(("GBP", "frozen")) == (1, 700)
    assert added(("CHF", "closed")) == (1, 0)
    assert added(("CHF", "active")) == (0, 0)
    assert projections.verify(bank_totals) == []  # replayed in one batch, the rows are the same


def test_a_total_no_account_is_in_any_more_goes_so_that_batches_never_show_in_the_rows():
    caught_up(bank_totals)
    account = AccountFactory(initial_deposit=100, currency="SEK")
    caught_up(bank_totals)
    services.freeze(account_id=account.id, reason="lost card")
    caught_up(bank_totals)
    assert totals()[("SEK", "frozen")] == (1, 100)
    approved("unfreeze", account_id=account.id, reason="card found")
    caught_up(bank_totals)
    assert ("SEK", "frozen") not in totals() and totals()[("SEK", "active")] == (1, 100)
    assert projections.verify(bank_totals) == []
