"""The events table the migration made is the seed's, plus the position and guards."""

import pytest
from django.db import connection

from eventstore.models import Event

pytestmark = pytest.mark.django_db

SEED_COLUMNS = {
    "id": ("bigint", "NO"),
    "aggregate_type": ("character varying", "NO"),
    "aggregate_id": ("uuid", "NO"),
    "event_type": ("character varying", "NO"),
    "event_data": ("jsonb", "NO"),
    "metadata": ("jsonb", "YES"),
    "version": ("integer", "NO"),
    "created_at": ("timestamp with time zone", "YES"),
    "transaction_id": ("xid8", "NO"),
}


def query(sql, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def test_events_table_has_the_seed_columns_with_their_types_plus_transaction_id():
    rows = query(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name = 'events'"
    )
    assert {name: (kind, nullable) for name, kind, nullable in rows} == SEED_COLUMNS


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
    from tests.conftest import new_events, new_id

    aggregate = new_id()
    assert store.append(aggregate, "Thing", 0, new_events("Made", "Painted", colour="red")) == 2
    stored = store.load(aggregate)
    rows = list(Event.objects.filter(aggregate_id=aggregate))
    assert [(e.id, e.version, e.event_type, e.event_data) for e in rows] == [
        (s.id, s.version, s.event_type, s.data) for s in stored
    ]
    assert rows[0].transaction_id == stored[0].transaction_id > 0


@pytest.mark.django_db(transaction=True)
def test_the_migration_reverses_cleanly_and_reapplies():
    from django.db.migrations.executor import MigrationExecutor

    def migrate(target):
        executor = MigrationExecutor(connection)
        executor.migrate([("eventstore", target)])

    def exists(kind, name):
        sql = {
            "table": "SELECT to_regclass(%s) IS NOT NULL",
            "function": "SELECT to_regproc(%s) IS NOT NULL",
        }[kind]
        return query(sql, [name])[0][0]

    migrate(None)
    try:
        assert not exists("table", "events")
        assert not exists("function", "events_check_append")
        assert not exists("function", "events_reject_change")
    finally:
        migrate("0001_events")
    assert exists("table", "events")
    assert exists("function", "events_check_append")
