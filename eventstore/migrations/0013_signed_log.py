"""The signed log: each event's chain hash and MAC, signed snapshots, the seal and the quarantine.

The seed's columns stay as they are; the signature goes in three new columns,
NULL on the events stored before signing existed (the seal vouches for those).
Adding a column without a default rewrites nothing, however long the log.

events_load and events_load_after now return what checking a load needs: the
seal of the aggregate, the snapshot's signature and, for each event, every field
its chain hash covers. They skip the events the owner quarantined.
"""

from django.db import migrations, models
from django.db.models.functions import Now

COLUMNS = """
ALTER TABLE public.events ADD COLUMN chain_hash bytea, ADD COLUMN key_id text, ADD COLUMN mac bytea;
"""
DROP_COLUMNS = "ALTER TABLE public.events DROP COLUMN chain_hash, DROP COLUMN key_id, DROP COLUMN mac;"

RETURNS = """
RETURNS TABLE (kind text, id bigint, event_type text, payload jsonb, version integer, at timestamptz,
               aggregate_type text, metadata jsonb, chain_hash bytea, key_id text, mac bytea, created text)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, public, pg_temp
"""

# The clock row (read once the lock is held, with the aggregate's latest version and, as its id,
# how many of its events are quarantined), then the seal row.
CLOCK_AND_SEAL = """
    RETURN QUERY SELECT 'clock',
        (SELECT count(*) FROM public.event_quarantine q WHERE q.aggregate_id = p_aggregate), NULL::text, NULL::jsonb,
        (SELECT COALESCE(max(e.version), 0) FROM public.events e WHERE e.aggregate_id = p_aggregate),
        pg_catalog.clock_timestamp(), NULL::text, NULL::jsonb, NULL::bytea, NULL::text, NULL::bytea, NULL::text;
    RETURN QUERY SELECT 'seal', NULL::bigint, NULL::text, NULL::jsonb, s.version, NULL::timestamptz,
        s.aggregate_type, NULL::jsonb, s.chain_hash, s.key_id, s.mac, NULL::text
        FROM public.event_seal s WHERE s.aggregate_id = p_aggregate;
"""

# An event's time comes as the text its chain hash covers (eventstore.signing.utc), made by the
# server: a long history then decodes and formats no timestamp in Python.
EVENT_COLUMNS = """NULL::text, e.id, e.event_type, e.event_data, e.version, NULL::timestamptz,
               e.aggregate_type, e.metadata, e.chain_hash, e.key_id, e.mac,
               pg_catalog.to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')"""

NOT_QUARANTINED = "NOT EXISTS (SELECT 1 FROM public.event_quarantine q WHERE q.event_id = e.id)"

CREATE = f"""
DROP FUNCTION public.events_load(uuid, integer, integer, bigint);
CREATE FUNCTION public.events_load(p_aggregate uuid, p_schema integer, p_up_to integer, p_lock bigint)
{RETURNS} AS $$
BEGIN
    IF p_lock IS NOT NULL THEN
        PERFORM pg_catalog.pg_advisory_xact_lock(p_lock);
    END IF;
    {CLOCK_AND_SEAL}
    RETURN QUERY
        WITH snap AS (
            SELECT s.version, s.state, s.chain_hash, s.key_id, s.mac FROM public.snapshots s
             WHERE s.aggregate_id = p_aggregate AND s.schema_version = p_schema AND s.version <= p_up_to
        )
        SELECT 'snapshot', NULL::bigint, NULL::text, snap.state, snap.version,
               (SELECT e.created_at FROM public.events e
                 WHERE e.aggregate_id = p_aggregate AND e.version = snap.version),
               NULL::text, NULL::jsonb, snap.chain_hash, snap.key_id, snap.mac, NULL::text
          FROM snap
        UNION ALL
        (SELECT {EVENT_COLUMNS} FROM public.events e
          WHERE e.aggregate_id = p_aggregate
            AND e.version > COALESCE((SELECT snap.version FROM snap), 0)
            AND e.version <= p_up_to
            AND {NOT_QUARANTINED}
          ORDER BY e.version);
END;
$$;

DROP FUNCTION public.events_load_after(uuid, integer, bigint);
CREATE FUNCTION public.events_load_after(p_aggregate uuid, p_after integer, p_lock bigint)
{RETURNS} AS $$
BEGIN
    IF p_lock IS NOT NULL THEN
        PERFORM pg_catalog.pg_advisory_xact_lock(p_lock);
    END IF;
    {CLOCK_AND_SEAL}
    RETURN QUERY
        SELECT {EVENT_COLUMNS} FROM public.events e
         WHERE e.aggregate_id = p_aggregate AND e.version > p_after AND {NOT_QUARANTINED}
         ORDER BY e.version;
END;
$$;
"""

RESTORE = """
DROP FUNCTION public.events_load(uuid, integer, integer, bigint);
DROP FUNCTION public.events_load_after(uuid, integer, bigint);
"""


def _previous_functions() -> str:
    """The functions as migrations 0010 and 0012 made them, for going back."""
    import importlib

    guards = importlib.import_module("eventstore.migrations.0010_guards_fixed_search_path")
    after = importlib.import_module("eventstore.migrations.0012_events_load_after")
    start = "CREATE FUNCTION public.events_load("
    load: str = start + guards.GUARDS.split(start, 1)[1]
    return RESTORE + load + str(after.CREATE)


class Migration(migrations.Migration):
    dependencies = [
        ("eventstore", "0012_events_load_after"),
    ]

    operations = [
        migrations.RunSQL(
            COLUMNS,
            DROP_COLUMNS,
            state_operations=[
                migrations.AddField("event", "chain_hash", models.BinaryField(null=True)),
                migrations.AddField("event", "key_id", models.TextField(null=True)),
                migrations.AddField("event", "mac", models.BinaryField(null=True)),
            ],
        ),
        migrations.AddField("snapshot", "chain_hash", models.BinaryField(null=True)),
        migrations.AddField("snapshot", "key_id", models.TextField(null=True)),
        migrations.AddField("snapshot", "mac", models.BinaryField(null=True)),
        migrations.CreateModel(
            name="Seal",
            fields=[
                ("aggregate_id", models.UUIDField(primary_key=True, serialize=False)),
                ("aggregate_type", models.TextField()),
                ("version", models.IntegerField()),
                ("chain_hash", models.BinaryField()),
                ("key_id", models.TextField()),
                ("mac", models.BinaryField()),
                ("sealed_at", models.DateTimeField(db_default=Now())),
                ("sealed_by", models.TextField()),
            ],
            options={"db_table": "event_seal", "default_permissions": ("view",)},
        ),
        migrations.CreateModel(
            name="QuarantinedEvent",
            fields=[
                ("event_id", models.BigIntegerField(primary_key=True, serialize=False)),
                ("aggregate_id", models.UUIDField(db_index=True)),
                ("version", models.IntegerField()),
                ("reason", models.TextField()),
                ("quarantined_by", models.TextField()),
                ("quarantined_at", models.DateTimeField(db_default=Now())),
            ],
            options={
                "db_table": "event_quarantine",
                "default_permissions": ("view",),
                "verbose_name": "quarantined event",
            },
        ),
        migrations.RunSQL(CREATE, _previous_functions()),
    ]
