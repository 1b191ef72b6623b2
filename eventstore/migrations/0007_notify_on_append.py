"""Wake projection runners when events are appended (NOTIFY is delivered at commit)."""

from django.db import migrations

CREATE = """
CREATE FUNCTION events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('events_appended', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER events_notify AFTER INSERT ON events FOR EACH STATEMENT EXECUTE FUNCTION events_notify();
"""
DROP = """
DROP TRIGGER events_notify ON events;
DROP FUNCTION events_notify();
"""


class Migration(migrations.Migration):
    dependencies = [("eventstore", "0006_projection_checkpoints")]

    operations = [migrations.RunSQL(CREATE, reverse_sql=DROP)]
