"""The database itself refuses to rewrite history, whatever SQL reaches it."""

import psycopg
import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from tests.support import new_events, new_id

pytestmark = pytest.mark.django_db


def table_contents():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, aggregate_id, aggregate_type, event_type, event_data::text, version FROM events ORDER BY id"
        )
        return cursor.fetchall()


def rejected(sql, params=()):
    """Run sql in a savepoint and return the database's error for it."""
    with pytest.raises(DatabaseError) as caught:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
    return caught.value


def insert_sql(aggregate_id, version, aggregate_type="Thing"):
    return (
        "INSERT INTO events (aggregate_id, aggregate_type, event_type, event_data, version) "
        "VALUES (%s, %s, 'Made', '{}', %s)",
        [aggregate_id, aggregate_type, version],
    )


@pytest.fixture
def history(store):
    aggregate = new_id()
    store.append(aggregate, "Thing", 0, new_events("Made", "Painted", "Sold"))
    return aggregate


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE events SET event_data = '{\"forged\": true}' WHERE aggregate_id = %s",
        "UPDATE events SET version = version + 10 WHERE aggregate_id = %s",
        "DELETE FROM events WHERE aggregate_id = %s",
        "DELETE FROM events WHERE aggregate_id = %s AND version = 3",
    ],
)
def test_update_and_delete_are_rejected_and_change_nothing(history, sql):
    before = table_contents()
    error = rejected(sql, [history])
    assert "events are append-only" in str(error)
    assert table_contents() == before


def test_truncate_is_rejected_and_changes_nothing(history):
    before = table_contents()
    error = rejected("TRUNCATE events")
    assert "events are append-only" in str(error)
    assert table_contents() == before


@pytest.mark.parametrize("version", [0, -1])
def test_insert_below_version_one_is_rejected(version):
    error = rejected(*insert_sql(new_id(), version))
    assert "version must be 1 or more" in str(error)


def test_insert_leaving_a_gap_is_rejected(history):
    before = table_contents()
    error = rejected(*insert_sql(history, 5))
    assert "would leave a gap" in str(error)
    assert table_contents() == before


def test_first_event_at_version_two_is_a_gap():
    error = rejected(*insert_sql(new_id(), 2))
    assert "version 1 does not exist" in str(error)


def test_duplicate_version_is_rejected_by_the_unique_key(history):
    before = table_contents()
    error = rejected(*insert_sql(history, 3))
    assert isinstance(error, IntegrityError)
    assert error.__cause__.diag.constraint_name == "events_aggregate_id_version_key"
    assert table_contents() == before


def test_foreign_aggregate_type_is_rejected(history):
    before = table_contents()
    error = rejected(*insert_sql(history, 4, aggregate_type="Other"))
    assert f"aggregate {history} is a Thing, not a Other" in str(error)
    assert table_contents() == before


def test_next_version_by_raw_sql_is_accepted(history):
    with connection.cursor() as cursor:
        cursor.execute(*insert_sql(history, 4))
        cursor.execute("SELECT max(version) FROM events WHERE aggregate_id = %s", [history])
        assert cursor.fetchone() == (4,)


def test_a_forged_transaction_id_is_replaced_by_the_writers_own():
    aggregate = new_id()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO events (aggregate_id, aggregate_type, event_type, event_data, version, transaction_id) "
            "VALUES (%s, 'Thing', 'Made', '{}', 1, '1'::xid8) "
            "RETURNING transaction_id::text, pg_current_xact_id()::text",
            [aggregate],
        )
        stored, own = cursor.fetchone()
    assert stored == own != "1"


@pytest.mark.django_db(transaction=True)
def test_appending_after_a_later_transaction_is_a_serialization_failure(raw_connect):
    """An older transaction may not write version N+1 on top of a younger one's N.

    Otherwise ordering the log by transaction would put N+1 before N.
    """
    aggregate = new_id()
    older = raw_connect()
    younger = raw_connect(autocommit=True)
    older.execute("SELECT pg_current_xact_id()")  # the older transaction takes its xid now
    younger.execute(*insert_sql(aggregate, 1))
    with pytest.raises(psycopg.errors.SerializationFailure) as caught:
        older.execute(*insert_sql(aggregate, 2))
    assert "written by a later transaction" in str(caught.value)
    older.rollback()
    older.execute(*insert_sql(aggregate, 2))  # a retry in a new transaction succeeds
    older.commit()


FIXED_SEARCH_PATH = ["search_path=pg_catalog, public, pg_temp"]


def test_every_event_store_function_runs_with_a_fixed_search_path():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.proname, p.proconfig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'public' AND p.proname LIKE 'events%%' ORDER BY p.proname"
        )
        functions = dict(cursor.fetchall())
    assert set(functions) == {
        "events_check_append", "events_load", "events_load_after", "events_notify", "events_reject_change",
    }  # fmt: skip
    assert all(config == FIXED_SEARCH_PATH for config in functions.values()), functions


def test_a_temporary_table_named_events_does_not_fool_the_append_guard(history):
    with connection.cursor() as cursor:
        # pg_temp comes first in a session's search path unless a function fixes its own.
        cursor.execute("CREATE TEMPORARY TABLE events (LIKE public.events)")
        cursor.execute(
            "INSERT INTO pg_temp.events (id, aggregate_id, aggregate_type, event_type, event_data, version, created_at,"
            " transaction_id) VALUES (0, %s, 'Thing', 'Made', '{}', 9, now(), '1')",
            [history],
        )
    error = rejected(
        "INSERT INTO public.events (aggregate_id, aggregate_type, event_type, event_data, version) "
        "VALUES (%s, 'Thing', 'Forged', '{}', 10)",
        [history],
    )
    assert "would leave a gap" in str(error)


def test_a_temporary_snapshots_table_does_not_fool_the_loader(history):
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE snapshots (LIKE public.snapshots INCLUDING IDENTITY)")
        cursor.execute(
            "INSERT INTO pg_temp.snapshots (aggregate_id, aggregate_type, version, schema_version, state, taken_at) "
            "VALUES (%s, 'Thing', 3, 1, '{\"forged\": true}', now())",
            [history],
        )
        cursor.execute(
            "SELECT event_type, payload::text FROM events_load(%s, 1, 100, NULL) WHERE payload IS NOT NULL", [history]
        )
        loaded = cursor.fetchall()
    assert [event_type for event_type, _ in loaded] == ["Made", "Painted", "Sold"]


@pytest.fixture
def outsider():
    """A role that may insert events but does not own the table, as the application's role."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE ROLE bank_guard_test_writer")
        cursor.execute("GRANT SELECT, INSERT ON events TO bank_guard_test_writer")
        cursor.execute("GRANT USAGE ON SEQUENCE events_id_seq TO bank_guard_test_writer")
        cursor.execute("SET ROLE bank_guard_test_writer")
    yield
    with connection.cursor() as cursor:
        cursor.execute("RESET ROLE")


def insert_dated(aggregate_id, version, created_at_sql):
    return (
        "INSERT INTO events (aggregate_id, aggregate_type, event_type, event_data, version, created_at) "
        f"VALUES (%s, 'Thing', 'Made', '{{}}', %s, {created_at_sql})",
        [aggregate_id, version],
    )


@pytest.mark.parametrize(
    "created_at", ["clock_timestamp() - interval '1 day'", "clock_timestamp() + interval '1 hour'"]
)
def test_the_application_role_cannot_date_an_event_away_from_the_clock(outsider, created_at):
    error = rejected(*insert_dated(new_id(), 1, created_at))
    assert "is not within 5 seconds of the database clock" in str(error)
    assert error.__cause__.sqlstate == "23514"


def test_the_application_role_dates_events_by_the_clock(outsider):
    aggregate = new_id()
    with connection.cursor() as cursor:
        cursor.execute(*insert_dated(aggregate, 1, "clock_timestamp()"))
        cursor.execute(*insert_dated(aggregate, 2, "clock_timestamp()"))
        cursor.execute("SELECT count(*) FROM events WHERE aggregate_id = %s", [aggregate])
        assert cursor.fetchone() == (2,)


def test_the_owner_may_load_past_times_but_never_before_the_previous_event():
    aggregate = new_id()
    with connection.cursor() as cursor:
        cursor.execute(*insert_dated(aggregate, 1, "'2024-01-01T10:00:00Z'"))
        cursor.execute(*insert_dated(aggregate, 2, "'2024-01-02T10:00:00Z'"))
    error = rejected(*insert_dated(aggregate, 3, "'2024-01-01T12:00:00Z'"))
    assert "before version 2" in str(error)
    assert error.__cause__.sqlstate == "40001"
