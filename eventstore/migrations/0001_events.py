"""The events table: the seed's schema, the commit-safe position, and the guards.

Guards live in the database so that no code path (a shell, a script, a future
bug) can rewrite history: see docs/architecture.md, "The events table".
"""

from django.db import migrations, models

import eventstore.models

CREATE_TABLE = """
CREATE TABLE events (
    id BIGSERIAL PRIMARY KEY,
    aggregate_type VARCHAR(255) NOT NULL,
    aggregate_id UUID NOT NULL,
    event_type VARCHAR(255) NOT NULL,
    event_data JSONB NOT NULL,
    metadata JSONB,
    version INTEGER NOT NULL,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT events_aggregate_id_version_key UNIQUE (aggregate_id, version)
);
CREATE INDEX idx_events_aggregate ON events (aggregate_id, version);
CREATE INDEX idx_events_position ON events (transaction_id, id);
"""

CREATE_GUARDS = """
CREATE FUNCTION events_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: % is not allowed on the events table', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION events_reject_change();
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_reject_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_reject_change();

-- Each aggregate's history is 1..N with no gap, one aggregate type throughout,
-- and written in transaction order, so that ordering the whole log by
-- (transaction_id, id) agrees with every aggregate's version order.
CREATE FUNCTION events_check_append() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    previous RECORD;
BEGIN
    -- The position is the writer's own transaction, whatever the INSERT said.
    NEW.transaction_id := pg_current_xact_id();
    IF NEW.version IS NULL OR NEW.version < 1 THEN
        RAISE EXCEPTION 'event version must be 1 or more, got %', NEW.version
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.version = 1 THEN
        RETURN NEW;
    END IF;
    SELECT aggregate_type, transaction_id INTO previous
        FROM events
        WHERE aggregate_id = NEW.aggregate_id AND version = NEW.version - 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'version % of aggregate % would leave a gap: version % does not exist',
            NEW.version, NEW.aggregate_id, NEW.version - 1
            USING ERRCODE = 'check_violation';
    END IF;
    IF previous.aggregate_type <> NEW.aggregate_type THEN
        RAISE EXCEPTION 'aggregate % is a %, not a %',
            NEW.aggregate_id, previous.aggregate_type, NEW.aggregate_type
            USING ERRCODE = 'check_violation';
    END IF;
    IF previous.transaction_id > NEW.transaction_id THEN
        RAISE EXCEPTION 'version % of aggregate % was written by a later transaction; retry',
            NEW.version - 1, NEW.aggregate_id
            USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER events_append_guard BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_check_append();
"""

DROP = """
DROP TABLE events;
DROP FUNCTION events_check_append();
DROP FUNCTION events_reject_change();
"""


class Migration(migrations.Migration):
    initial = True
    dependencies = []

    operations = [
        migrations.RunSQL(CREATE_TABLE + CREATE_GUARDS, reverse_sql=DROP),
        # The table above is the real one; this only tells Django's migration state.
        migrations.CreateModel(
            name="Event",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("aggregate_type", models.CharField(max_length=255)),
                ("aggregate_id", models.UUIDField()),
                ("event_type", models.CharField(max_length=255)),
                ("event_data", models.JSONField()),
                ("metadata", models.JSONField(null=True)),
                ("version", models.IntegerField()),
                ("created_at", models.DateTimeField()),
                ("transaction_id", eventstore.models.TransactionIdField(editable=False)),
            ],
            options={"db_table": "events", "ordering": ["aggregate_id", "version"], "managed": False},
        ),
    ]
