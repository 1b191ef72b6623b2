"""Guards that cannot be side-stepped, and a created_at the writer gives and the guard checks.

PostgreSQL looks a name up in the session's search_path, and pg_temp comes first
unless it is listed: the application's role could create a temporary table called
`events`, and the append guard would then look for the previous version there.
So every function names its schema for each table and function, and runs with
`search_path = pg_catalog, public, pg_temp` (pg_temp last, said out loud).

created_at: the writer now gives it (a command takes the database's clock right
after it holds the account's lock, so it can be signed and so that it follows
the account's previous event). The guard checks it: never before the
aggregate's previous event (a lost race, so SQLSTATE 40001: retry); and, for everyone but the table's owner, within
CLOCK_WINDOW of the database's clock. The owner's demo and benchmark loads
write past times on purpose.

events_load now returns, first, the database's clock read once the lock is
held, and with the snapshot row the time of the event at the snapshot's
version (NULL when the log has no such event: a snapshot ahead of the log).
"""

import importlib
from types import ModuleType

from django.db import migrations

CLOCK_WINDOW = "5 seconds"

GUARDS = f"""
CREATE OR REPLACE FUNCTION public.events_reject_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: % is not allowed on the events table', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE OR REPLACE FUNCTION public.events_check_append() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    previous RECORD;
    clock timestamptz := pg_catalog.clock_timestamp();
BEGIN
    -- The position is the writer's own transaction, whatever the INSERT said.
    NEW.transaction_id := pg_catalog.pg_current_xact_id();
    IF NEW.version IS NULL OR NEW.version < 1 THEN
        RAISE EXCEPTION 'event version must be 1 or more, got %', NEW.version
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.created_at NOT BETWEEN clock - interval '{CLOCK_WINDOW}' AND clock + interval '{CLOCK_WINDOW}'
       AND NOT pg_catalog.pg_has_role(
           CURRENT_USER, (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = TG_RELID), 'MEMBER') THEN
        RAISE EXCEPTION 'event created_at % is not within {CLOCK_WINDOW} of the database clock (%)',
            NEW.created_at, clock
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.version = 1 THEN
        RETURN NEW;
    END IF;
    SELECT e.aggregate_type, e.transaction_id, e.created_at INTO previous
        FROM public.events e
        WHERE e.aggregate_id = NEW.aggregate_id AND e.version = NEW.version - 1;
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
    -- Like the order of transactions above: a writer whose time was read before
    -- the previous version was written lost a race, and retries with a new time.
    IF NEW.created_at < previous.created_at THEN
        RAISE EXCEPTION 'version % of aggregate % would be dated %, before version % (%); retry',
            NEW.version, NEW.aggregate_id, NEW.created_at, NEW.version - 1, previous.created_at
            USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN NEW;
END;
$$;

CREATE OR REPLACE FUNCTION public.events_notify() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    PERFORM pg_catalog.pg_notify('events_appended', '');
    RETURN NULL;
END;
$$;

DROP FUNCTION public.events_load(uuid, integer, integer, bigint);
CREATE FUNCTION public.events_load(p_aggregate uuid, p_schema integer, p_up_to integer, p_lock bigint)
RETURNS TABLE (event_type text, payload jsonb, version integer, at timestamptz)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF p_lock IS NOT NULL THEN
        PERFORM pg_catalog.pg_advisory_xact_lock(p_lock);
    END IF;
    -- First the clock, read now that the lock is held; NULL times on the tail
    -- keep a long replay from decoding a timestamp per row it does not need.
    RETURN QUERY SELECT NULL::text, NULL::jsonb, 0, pg_catalog.clock_timestamp();
    RETURN QUERY
        WITH snap AS (
            SELECT s.version, s.state FROM public.snapshots s
             WHERE s.aggregate_id = p_aggregate AND s.schema_version = p_schema AND s.version <= p_up_to
        )
        SELECT NULL::text, snap.state, snap.version,
               (SELECT e.created_at FROM public.events e
                 WHERE e.aggregate_id = p_aggregate AND e.version = snap.version)
          FROM snap
        UNION ALL
        (SELECT e.event_type, e.event_data, e.version, NULL::timestamptz FROM public.events e
          WHERE e.aggregate_id = p_aggregate
            AND e.version > COALESCE((SELECT snap.version FROM snap), 0)
            AND e.version <= p_up_to
          ORDER BY e.version);
END;
$$;
"""


def _earlier(name: str) -> ModuleType:
    return importlib.import_module(f"eventstore.migrations.{name}")


def _between(text: str, start: str, end: str) -> str:
    return start + text.split(start, 1)[1].split(end, 1)[0]


def _previous_guards() -> str:
    """The functions as migrations 0001, 0007 and 0008 left them."""
    first, notify, seed_types = (
        _earlier(n) for n in ("0001_events", "0007_notify_on_append", "0008_seed_column_types")
    )
    functions = [
        _between(first.CREATE_GUARDS, "CREATE FUNCTION events_reject_change", "CREATE TRIGGER"),
        _between(first.CREATE_GUARDS, "CREATE FUNCTION events_check_append", "CREATE TRIGGER"),
        _between(notify.CREATE, "CREATE FUNCTION events_notify", "CREATE TRIGGER"),
    ]
    replaced = [f.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION") for f in functions]
    return "\n".join([*replaced, seed_types.replace_events_load("text")])


class Migration(migrations.Migration):
    dependencies = [("eventstore", "0009_command_log_keys_by_actor")]

    operations = [migrations.RunSQL(GUARDS, reverse_sql=_previous_guards())]
