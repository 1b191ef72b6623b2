"""The events table takes the seed's column types: TEXT names and a NOT NULL created_at.

varchar to text is binary-coercible, so the table is neither rewritten nor
re-indexed. If an event has no created_at the migration stops rather than
inventing one: the table is append-only, and filling the gap would rewrite history.

events_load names the column type in its result, and PostgreSQL cannot change
a function's result type in place, so it is dropped and created again with the
same body (see migration 0003 for why it locks, then loads, in one function).
"""

from django.db import migrations, models

# The ALTER below needs this lock anyway; taking it first means no event
# without a time can be appended between the count and SET NOT NULL.
REFUSE_EVENTS_WITHOUT_TIME = """
LOCK TABLE events IN ACCESS EXCLUSIVE MODE;
DO $$
DECLARE
    missing bigint;
    examples text;
BEGIN
    SELECT count(*) INTO missing FROM events WHERE created_at IS NULL;
    IF missing > 0 THEN
        SELECT string_agg(id::text, ', ') || CASE WHEN missing > 5 THEN ', ...' ELSE '' END INTO examples
          FROM (SELECT id FROM events WHERE created_at IS NULL ORDER BY id LIMIT 5) AS first_ids;
        RAISE EXCEPTION 'events without a created_at: % (ids %); the seed schema makes created_at NOT NULL',
            missing, examples
            USING DETAIL = 'Nothing was rewritten and the schema is unchanged: the events table is append-only, '
                           'so this migration will not give an event a time it was not recorded with.',
                  HINT = 'Decide what those events'' times were (restore the events from a backup, or record '
                         'the times elsewhere and correct the rows deliberately), then run manage.py migrate again.';
    END IF;
END;
$$;
"""

TO_SEED_TYPES = """
ALTER TABLE events
    ALTER COLUMN aggregate_type TYPE text,
    ALTER COLUMN event_type TYPE text,
    ALTER COLUMN created_at SET NOT NULL;
"""
FROM_SEED_TYPES = """
ALTER TABLE events
    ALTER COLUMN aggregate_type TYPE varchar(255),
    ALTER COLUMN event_type TYPE varchar(255),
    ALTER COLUMN created_at DROP NOT NULL;
"""


def replace_events_load(name_type: str) -> str:
    """Migration 0003's events_load, word for word but for the type of event_type."""
    return f"""
DROP FUNCTION events_load(uuid, integer, integer, bigint);
CREATE FUNCTION events_load(p_aggregate uuid, p_schema integer, p_up_to integer, p_lock bigint)
RETURNS TABLE (event_type {name_type}, payload jsonb, version integer)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF p_lock IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(p_lock);
    END IF;
    RETURN QUERY
        WITH snap AS (
            SELECT s.version, s.state FROM snapshots s
             WHERE s.aggregate_id = p_aggregate AND s.schema_version = p_schema AND s.version <= p_up_to
        )
        SELECT NULL::{name_type}, snap.state, snap.version FROM snap
        UNION ALL
        (SELECT e.event_type, e.event_data, e.version FROM events e
          WHERE e.aggregate_id = p_aggregate
            AND e.version > COALESCE((SELECT snap.version FROM snap), 0)
            AND e.version <= p_up_to
          ORDER BY e.version);
END;
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("eventstore", "0007_notify_on_append")]

    operations = [
        migrations.RunSQL(REFUSE_EVENTS_WITHOUT_TIME, reverse_sql=migrations.RunSQL.noop),
        migrations.RunSQL(TO_SEED_TYPES, reverse_sql=FROM_SEED_TYPES),
        migrations.RunSQL(replace_events_load("text"), reverse_sql=replace_events_load("varchar")),
        # The model is unmanaged: these only bring Django's migration state along.
        migrations.AlterField(model_name="event", name="aggregate_type", field=models.TextField()),
        migrations.AlterField(model_name="event", name="event_type", field=models.TextField()),
    ]
