"""The events table the migration made is the seed's, plus the position and guards."""

import pytest
from django.contrib.auth.models import Group
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor

from accounts.roles import ROLES
from eventstore.models import Event
from tests.support import new_events, new_id

pytestmark = pytest.mark.django_db

SEED_COLUMNS = {
    "id": ("bigint", "NO"),
    "aggregate_type": ("text", "NO"),
    "aggregate_id": ("uuid", "NO"),
    "event_type": ("text", "NO"),
    "event_data": ("jsonb", "NO"),
    "metadata": ("jsonb", "YES"),
    "version": ("integer", "NO"),
    "created_at": ("timestamp with time zone", "NO"),
    "transaction_id": ("xid8", "NO"),
}
# Beside the seed's: each event's signature, NULL on events stored before signing (the seal covers them).
SIGNATURE_COLUMNS = {"chain_hash": ("bytea", "YES"), "key_id": ("text", "YES"), "mac": ("bytea", "YES")}
BEFORE_SEED_TYPES = ("eventstore", "0007_notify_on_append")


def query(sql, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def column_types():
    """The columns migration 0008 changes: their full SQL type and whether they take NULL."""
    rows = query(
        "SELECT attname, format_type(atttypid, atttypmod), NOT attnotnull FROM pg_attribute "
        "WHERE attrelid = 'events'::regclass AND attname IN ('aggregate_type', 'event_type', 'created_at')"
    )
    return {name: (kind, nullable) for name, kind, nullable in rows}


def test_events_table_has_the_seed_columns_with_their_types_plus_transaction_id_and_the_signature():
    rows = query(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name = 'events'"
    )
    assert {name: (kind, nullable) for name, kind, nullable in rows} == SEED_COLUMNS | SIGNATURE_COLUMNS


def test_events_defaults_are_the_sequence_now_and_the_current_transaction():
    rows = dict(query("SELECT column_name, column_default FROM information_schema.columns WHERE table_name = 'events'"))
    assert rows["id"].startswith("nextval(")
    assert rows["created_at"] == "now()"
    assert rows["transaction_id"] == "pg_current_xact_id()"


def test_unique_key_and_indexes_are_those_the_model_declares():
    constraints = connection.introspection.get_constraints(connection.cursor(), "events")
    unique = {name for name, c in constraints.items() if c["unique"] and not c["primary_key"]}
    model_unique = {c.name for c in Event._meta.constraints}
    assert unique == model_unique == {"events_aggregate_id_version_key"}
    assert constraints["events_aggregate_id_version_key"]["columns"] == ["aggregate_id", "version"]
    for index in Event._meta.indexes:
        assert constraints[index.name]["index"]
        assert constraints[index.name]["columns"] == list(index.fields)
    assert constraints["idx_events_metadata"]["type"] == "gin"


def test_every_command_updates_two_indexes_of_the_command_log_its_key_and_its_time():
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'command_log'")
        indexes = dict(cursor.fetchall())
    assert set(indexes) == {"command_log_pkey", "command_log_recorded"}
    assert indexes["command_log_recorded"].endswith("USING btree (recorded_at)")


def test_guards_are_installed_as_triggers():
    rows = query("SELECT tgname FROM pg_trigger WHERE tgrelid = 'events'::regclass AND NOT tgisinternal")
    assert {name for (name,) in rows} == {
        "events_no_update",
        "events_no_delete",
        "events_no_truncate",
        "events_append_guard",
        "events_notify",
    }


def test_orm_reads_what_the_store_appended(store):
    aggregate = new_id()
    assert store.append(aggregate, "Thing", 0, new_events("Made", "Painted", colour="red")).version == 2
    stored = store.load(aggregate)
    rows = list(Event.objects.filter(aggregate_id=aggregate))
    assert [(e.id, e.version, e.event_type, e.event_data) for e in rows] == [
        (s.id, s.version, s.event_type, s.data) for s in stored
    ]
    assert rows[0].transaction_id == stored[0].transaction_id > 0


def loaded(aggregate):
    """What events_load gives for the whole history, with the SQL type of event_type."""
    return query(
        # The snapshot row and the events: those with a payload (not the clock or seal rows).
        "SELECT event_type, pg_typeof(event_type)::text, version FROM events_load(%s, 1, %s, NULL) "
        "WHERE payload IS NOT NULL",
        [aggregate, 2**31 - 1],
    )


def snapshot(aggregate, *, version):
    """A schema 1 snapshot of a "Thing": what events_load returns does not depend on its state."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO snapshots (aggregate_id, aggregate_type, version, schema_version, state, taken_at) "
            "VALUES (%s, 'Thing', %s, 1, '{}', now())",
            [aggregate, version],
        )


def test_events_load_returns_the_snapshot_row_then_the_tail_as_text(store):
    aggregate = new_id()
    store.append(aggregate, "Thing", 0, new_events("Made", "Painted", "Sold"))
    snapshot(aggregate, version=1)
    assert loaded(aggregate) == [(None, "text", 1), ("Painted", "text", 2), ("Sold", "text", 3)]


# Migrating moves the graph's applied state, so each step needs a fresh executor.
def migrate(*targets):
    MigrationExecutor(connection).migrate(list(targets))


def migrate_fully():
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def unapplied():
    executor = MigrationExecutor(connection)
    return [migration.name for migration, _ in executor.migration_plan(executor.loader.graph.leaf_nodes())]


def exists(kind, name):
    sql = {
        "table": "SELECT to_regclass(%s) IS NOT NULL",
        "function": "SELECT to_regproc(%s) IS NOT NULL",
    }[kind]
    return query(sql, [name])[0][0]


@pytest.mark.django_db(transaction=True)
def test_the_migration_reverses_cleanly_and_reapplies():
    migrate(("eventstore", None))
    try:
        assert not exists("table", "events")
        assert not exists("function", "events_check_append")
        assert not exists("function", "events_reject_change")
    finally:
        # Later tests need every app's migrations, the accounts app's (which depend on eventstore) too.
        migrate_fully()
    assert unapplied() == []
    assert exists("table", "events")
    assert exists("function", "events_check_append")
    # The accounts data migration went down with eventstore; coming back up, it made the groups again.
    assert set(Group.objects.values_list("name", flat=True)) >= set(ROLES)


@pytest.mark.django_db(transaction=True)
def test_reversing_the_seed_types_restores_varchar_a_nullable_created_at_and_the_old_events_load(store):
    aggregate = new_id()
    try:
        migrate(BEFORE_SEED_TYPES)
        assert column_types() == {
            "aggregate_type": ("character varying(255)", False),
            "event_type": ("character varying(255)", False),
            "created_at": ("timestamp with time zone", True),
        }
        for version, event_type in enumerate(["Made", "Painted", "Sold"], start=1):  # as the store wrote them then
            query(
                "INSERT INTO events (aggregate_id, aggregate_type, event_type, event_data, version) "
                "VALUES (%s, 'Thing', %s, '{}', %s) RETURNING id",
                [aggregate, event_type, version],
            )
        snapshot(aggregate, version=1)
        assert loaded(aggregate) == [
            (None, "character varying", 1),
            ("Painted", "character varying", 2),
            ("Sold", "character varying", 3),
        ]
    finally:
        migrate_fully()
    assert unapplied() == []
    assert column_types() == {
        "aggregate_type": ("text", False),
        "event_type": ("text", False),
        "created_at": ("timestamp with time zone", False),
    }
    assert loaded(aggregate) == [(None, "text", 1), ("Painted", "text", 2), ("Sold", "text", 3)]


@pytest.mark.django_db(transaction=True)
def test_an_event_without_created_at_stops_the_migration_which_rewrites_nothing():
    def event():
        return query(
            "SELECT id, aggregate_type, event_type, event_data::text, version, created_at, transaction_id::text "
            "FROM events WHERE aggregate_id = %s",
            [aggregate],
        )

    aggregate = new_id()
    try:
        migrate(BEFORE_SEED_TYPES)
        query(
            "INSERT INTO events (aggregate_id, aggregate_type, event_type, event_data, version, created_at) "
            "VALUES (%s, 'Thing', 'Made', '{}', 1, NULL) RETURNING id",
            [aggregate],
        )
        before = event()
        with pytest.raises(DatabaseError, match=r"events without a created_at: 1 \(ids \d+\)") as stopped:
            migrate_fully()
        assert "Nothing was rewritten" in str(stopped.value)
        assert "manage.py migrate again" in str(stopped.value)
        assert event() == before
        assert unapplied()[0] == "0008_seed_column_types"  # and what follows it
        assert column_types()["created_at"] == ("timestamp with time zone", True)
    finally:
        # The table is append-only: only dropping it removes the event.
        migrate(("eventstore", None))
        migrate_fully()
    assert unapplied() == []
