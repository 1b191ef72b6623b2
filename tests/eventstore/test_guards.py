"""The database itself refuses to rewrite history, whatever SQL reaches it."""

import psycopg
import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from tests.conftest import new_events, new_id

pytestmark = pytest.mark.django_db


def table_contents():
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, aggregate_id, aggregate_type, event_type, event_data::text, version FROM events ORDER BY id")
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
            "VALUES (%s, 'Thing', 'Made', '{}', 1, '1'::xid8) RETURNING transaction_id::text, pg_current_xact_id()::text",
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
