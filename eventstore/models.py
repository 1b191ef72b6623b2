"""ORM mapping of the events table that migration 0001 creates with raw SQL.

The table is unmanaged: Django never alters it. The model exists so the admin,
selectors and tests read the very table the migration made, constraints included.
Writes go through eventstore.store.EventStore only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.functions import Now
from django.utils.functional import cached_property

from eventstore.upcasting import upcasters

MAX_VERSION = 2**31 - 1  # events.version is a PostgreSQL integer

if TYPE_CHECKING:
    # Generic in django-stubs only: Django's Field takes no type arguments at runtime.
    _IntField = models.Field[int, int]
else:
    _IntField = models.Field


class TransactionIdField(_IntField):
    """PostgreSQL's xid8: the writing transaction, half of the commit-safe position."""

    description = "PostgreSQL 64-bit transaction id (xid8)"

    def db_type(self, connection: BaseDatabaseWrapper) -> str:
        return "xid8"

    def from_db_value(self, value: str | int | None, expression: object, connection: BaseDatabaseWrapper) -> int | None:
        return None if value is None else int(value)


class Event(models.Model):
    id = models.BigAutoField(primary_key=True)
    aggregate_type = models.TextField()
    aggregate_id = models.UUIDField()
    event_type = models.TextField()
    event_data = models.JSONField()
    metadata = models.JSONField(null=True)
    version = models.IntegerField()
    created_at = models.DateTimeField()
    transaction_id = TransactionIdField(editable=False)
    # The signature (eventstore.signing); NULL on events stored before signing existed (see Seal).
    chain_hash = models.BinaryField(null=True)
    key_id = models.TextField(null=True)  # noqa: DJ001  NULL with the hash: a row the seal covers
    mac = models.BinaryField(null=True)

    class Meta:
        managed = False
        db_table = "events"
        default_permissions = ("view",)
        ordering = ["aggregate_id", "version"]
        constraints = [
            models.UniqueConstraint(fields=["aggregate_id", "version"], name="events_aggregate_id_version_key"),
        ]
        indexes = [
            models.Index(fields=["aggregate_id", "version"], name="idx_events_aggregate"),
            models.Index(fields=["transaction_id", "id"], name="idx_events_position"),
            GinIndex(fields=["metadata"], opclasses=["jsonb_path_ops"], name="idx_events_metadata"),
            models.Index(fields=["event_type", "id"], name="idx_events_type"),
            models.Index(fields=["created_at"], name="idx_events_created"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} v{self.version} of {self.aggregate_type} {self.aggregate_id}"

    @cached_property
    def data(self) -> dict[str, Any]:
        """The payload in its event type's current schema: upcast on read, never rewritten.

        Read payloads through this (or StoredEvent.data), never `event_data`: an old
        payload then reads as the shape every reader knows.
        """
        return upcasters.upcast(self.event_type, self.event_data)


class Snapshot(models.Model):
    """The state of one aggregate at a version: a cache, never the truth.

    Every snapshot taken is kept, so that a past view starts from the nearest one.
    Deleting every snapshot changes no answer; a snapshot whose schema_version is
    not the aggregate's current state schema is ignored.
    """

    id = models.BigAutoField(primary_key=True)
    aggregate_id = models.UUIDField()
    aggregate_type = models.CharField(max_length=255)
    version = models.PositiveIntegerField()
    schema_version = models.PositiveIntegerField()
    state = models.JSONField()
    taken_at = models.DateTimeField(db_default=Now())
    # The chain hash of the event at `version`, and the MAC over the snapshot with it
    # (eventstore.signing.snapshot_content); a snapshot without a valid one is ignored.
    chain_hash = models.BinaryField(null=True)
    key_id = models.TextField(null=True)  # noqa: DJ001  NULL: taken before signing existed, never trusted
    mac = models.BinaryField(null=True)

    class Meta:
        db_table = "snapshots"
        default_permissions = ("view",)
        constraints = [models.UniqueConstraint(fields=["aggregate_id", "version"], name="snapshots_aggregate_version")]

    def __str__(self) -> str:
        return f"{self.aggregate_type} {self.aggregate_id} at v{self.version}"


MAX_KEY_LENGTH = 100  # characters of an idempotency key, as the caller gives it (before the actor's prefix)


class CommandLog(models.Model):
    """One row per command that carried an idempotency key, written in its transaction.

    The same key again returns `result` and stores nothing; the same key with
    other arguments (a different `arguments_hash`) is refused. Keys are stored
    namespaced by the actor, so one person's key never answers for another.
    """

    # "<actor>:<key>": a username (up to 150 characters) or system actor, then the caller's key (up to 100).
    key = models.CharField(max_length=300, primary_key=True)
    command = models.CharField(max_length=100)
    arguments_hash = models.CharField(max_length=64)
    result = models.JSONField()
    recorded_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "command_log"
        default_permissions = ("view",)
        verbose_name = "command log entry"
        verbose_name_plural = "command log"
        # The admin lists the newest first; migration 0017 drops the pattern index Django gives a
        # text key (nobody searches keys by prefix), so every command still updates two indexes.
        indexes = [models.Index(fields=["recorded_at"], name="command_log_recorded")]

    def __str__(self) -> str:
        return f"{self.command} {self.key}"


class ProjectionCheckpoint(models.Model):
    """How far a projection has read the log: the commit-safe position (transaction, event id).

    Written in the same transaction as the projection's rows, so after a crash a
    projection resumes exactly where its last committed batch ended. A projection
    that stopped at an event it cannot apply records it here, until it goes past it.
    """

    name = models.CharField(max_length=100, primary_key=True)
    transaction_id = models.BigIntegerField(default=0)
    event_id = models.BigIntegerField(default=0)
    events_applied = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(db_default=Now())
    # Where it stopped, why and since when; all NULL while it is not stopped.
    failed_event_id = models.BigIntegerField(null=True)
    failure = models.TextField(null=True)  # noqa: DJ001  NULL is "not stopped"; "" would be a stop with no reason
    failed_at = models.DateTimeField(null=True)

    class Meta:
        db_table = "projection_checkpoints"
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"{self.name} at ({self.transaction_id}, {self.event_id})"


class Seal(models.Model):
    """One aggregate's chain head when the log was sealed: what vouches for the events stored unsigned.

    Written once, by the owner (`manage.py seal_event_store`); the application may only read it.
    """

    aggregate_id = models.UUIDField(primary_key=True)
    aggregate_type = models.TextField()
    version = models.IntegerField()
    chain_hash = models.BinaryField()
    key_id = models.TextField()
    mac = models.BinaryField()
    sealed_at = models.DateTimeField(db_default=Now())
    sealed_by = models.TextField()

    class Meta:
        db_table = "event_seal"
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"{self.aggregate_type} {self.aggregate_id} sealed at v{self.version}"


class QuarantinedEvent(models.Model):
    """An event the owner set aside: replay skips it and the chain goes on from the event before it.

    Written only by the owner (`manage.py quarantine_event`), with who did it and why;
    the event itself stays in the log, unchanged.
    """

    event_id = models.BigIntegerField(primary_key=True)
    aggregate_id = models.UUIDField(db_index=True)
    version = models.IntegerField()
    reason = models.TextField()
    quarantined_by = models.TextField()
    quarantined_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "event_quarantine"
        default_permissions = ("view",)
        verbose_name = "quarantined event"

    def __str__(self) -> str:
        return f"event {self.event_id} (version {self.version} of {self.aggregate_id})"


class IntegrityRun(models.Model):
    """One run of verify_event_store: when, how far, by whom, and how many findings (the dashboard reads it)."""

    started_at = models.DateTimeField(db_default=Now())
    finished_at = models.DateTimeField(null=True)
    # The commit-safe position the run read up to, and the one it started after (--since; 0, 0: the whole log).
    since_transaction = models.BigIntegerField(default=0)
    since_event = models.BigIntegerField(default=0)
    up_to_transaction = models.BigIntegerField(default=0)
    up_to_event = models.BigIntegerField(default=0)
    findings = models.IntegerField(default=0)
    run_by = models.TextField()

    class Meta:
        db_table = "integrity_run"
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"verification of {self.started_at:%Y-%m-%d %H:%M}: {self.findings} findings"


class IntegrityFinding(models.Model):
    """Something verify_event_store found wrong, with the aggregate, version and event it concerns."""

    run = models.ForeignKey(IntegrityRun, on_delete=models.PROTECT, related_name="found")
    title = models.TextField()  # which check found it
    aggregate_id = models.UUIDField(null=True, db_index=True)
    version = models.IntegerField(null=True)
    event_id = models.BigIntegerField(null=True)
    detail = models.TextField()

    class Meta:
        db_table = "integrity_finding"
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"{self.title}: {self.detail}"
