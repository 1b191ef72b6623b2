"""events_load: an aggregate's usable snapshot and the events after it, optionally locked first.

Returns the snapshot (if any, as a first row with a NULL event_type) and then the
tail in version order: one round trip for what folding the aggregate needs.

Given a lock key, it first takes that transaction-level advisory lock. A command
must hold its aggregate's lock before it reads the aggregate, or two writers
would decide on the same state. As two statements that costs a round trip; in
one plain statement the read would use a snapshot taken before the lock was
granted. Inside a volatile PL/pgSQL function each statement takes a fresh
snapshot, so the load runs after the lock and sees every writer that held it before.
"""

from django.db import migrations

CREATE = """
CREATE FUNCTION events_load(p_aggregate uuid, p_schema integer, p_up_to integer, p_lock bigint)
RETURNS TABLE (event_type varchar, payload jsonb, version integer)
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
        SELECT NULL::varchar, snap.state, snap.version FROM snap
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
    dependencies = [("eventstore", "0002_snapshots_and_command_log")]

    operations = [
        migrations.RunSQL(CREATE, reverse_sql="DROP FUNCTION events_load(uuid, integer, integer, bigint);"),
    ]
