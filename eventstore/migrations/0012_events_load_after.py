"""events_load_after: an aggregate's events after a version its reader already holds.

A command process keeps the states its own commands committed (eventstore.snapshots,
`recent`); to use one it needs only the events written since, after the lock. The
clock row carries the aggregate's latest version, so that a state held from a
transaction that was rolled back (ahead of the log) is noticed and dropped.
"""

from django.db import migrations

CREATE = """
CREATE FUNCTION public.events_load_after(p_aggregate uuid, p_after integer, p_lock bigint)
RETURNS TABLE (event_type text, payload jsonb, version integer, at timestamptz)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF p_lock IS NOT NULL THEN
        PERFORM pg_catalog.pg_advisory_xact_lock(p_lock);
    END IF;
    RETURN QUERY SELECT NULL::text, NULL::jsonb,
        (SELECT COALESCE(max(e.version), 0) FROM public.events e WHERE e.aggregate_id = p_aggregate),
        pg_catalog.clock_timestamp();
    RETURN QUERY
        SELECT e.event_type, e.event_data, e.version, NULL::timestamptz FROM public.events e
         WHERE e.aggregate_id = p_aggregate AND e.version > p_after
         ORDER BY e.version;
END;
$$;
"""

DROP = "DROP FUNCTION public.events_load_after(uuid, integer, bigint);"


class Migration(migrations.Migration):
    dependencies = [
        ("eventstore", "0011_projection_failures"),
    ]

    operations = [migrations.RunSQL(CREATE, DROP)]
