"""Indexes for the audit log's filters on a table of millions of events.

Metadata (actor, correlation id) is searched by containment through one GIN
index; type and time have their own. Each index costs every append a little.
"""

from django.db import migrations

CREATE = """
CREATE INDEX idx_events_metadata ON events USING gin (metadata jsonb_path_ops);
CREATE INDEX idx_events_type ON events (event_type, id);
CREATE INDEX idx_events_created ON events (created_at);
"""
DROP = """
DROP INDEX idx_events_metadata;
DROP INDEX idx_events_type;
DROP INDEX idx_events_created;
"""


class Migration(migrations.Migration):
    dependencies = [("eventstore", "0004_view_only_permissions")]

    operations = [migrations.RunSQL(CREATE, reverse_sql=DROP)]
