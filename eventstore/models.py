"""ORM mapping of the events table that migration 0001 creates with raw SQL.

The table is unmanaged: Django never alters it. The model exists so the admin,
selectors and tests read the very table the migration made, constraints included.
Writes go through eventstore.store.EventStore only.
"""

from django.db import models


class TransactionIdField(models.Field):
    """PostgreSQL's xid8: the writing transaction, half of the commit-safe position."""

    description = "PostgreSQL 64-bit transaction id (xid8)"

    def db_type(self, connection):
        return "xid8"

    def from_db_value(self, value, expression, connection):
        return None if value is None else int(value)


class Event(models.Model):
    id = models.BigAutoField(primary_key=True)
    aggregate_type = models.CharField(max_length=255)
    aggregate_id = models.UUIDField()
    event_type = models.CharField(max_length=255)
    event_data = models.JSONField()
    metadata = models.JSONField(null=True)
    version = models.IntegerField()
    created_at = models.DateTimeField()
    transaction_id = TransactionIdField(editable=False)

    class Meta:
        managed = False
        db_table = "events"
        ordering = ["aggregate_id", "version"]
        constraints = [
            models.UniqueConstraint(
                fields=["aggregate_id", "version"], name="events_aggregate_id_version_key"
            ),
        ]
        indexes = [
            models.Index(fields=["aggregate_id", "version"], name="idx_events_aggregate"),
            models.Index(fields=["transaction_id", "id"], name="idx_events_position"),
        ]

    def __str__(self):
        return f"{self.event_type} v{self.version} of {self.aggregate_type} {self.aggregate_id}"
