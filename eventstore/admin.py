"""Read-only browsing of events, snapshots and the command log.

History is never edited here: no add, change or delete. The lists never count
a million rows: the paginator counts at most CAP rows, and filters use indexes.
"""

import json
import uuid

from django.contrib import admin
from django.core.paginator import Paginator
from django.urls import NoReverseMatch, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html

from eventstore import registry
from eventstore.models import CommandLog, Event, Snapshot


class CappedPaginator(Paginator):
    """Counts at most CAP rows (SELECT count(*) FROM (... LIMIT CAP)): pages past it are not offered."""

    CAP = 10_000

    @cached_property
    def count(self):
        return self.object_list[: self.CAP].count()


class ReadOnlyAdmin(admin.ModelAdmin):
    paginator = CappedPaginator
    show_full_result_count = False
    list_per_page = 50

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def pretty(value):
    return format_html(
        "<pre style='white-space: pre-wrap'>{}</pre>", json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    )


class EventTypeFilter(admin.SimpleListFilter):
    """The registered event types, without a DISTINCT over the whole table."""

    title = "event type"
    parameter_name = "event_type"

    def lookups(self, request, model_admin):
        return [(name, name) for name in sorted(registry.event_types())]

    def queryset(self, request, queryset):
        return queryset.filter(event_type=self.value()) if self.value() else queryset


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ["id", "event_type", "aggregate", "version", "created_at", "actor"]
    list_filter = [EventTypeFilter, ("created_at", admin.DateFieldListFilter)]
    search_fields = ["aggregate_id"]  # handled by get_search_results: ids and correlation ids only
    search_help_text = "An aggregate (account) id or a correlation id."
    ordering = ["-id"]
    fields = [
        "id",
        "aggregate_type",
        "aggregate",
        "version",
        "event_type",
        "created_at",
        "transaction_id",
        "data",
        "meta",
    ]
    readonly_fields = fields

    @admin.display(description="aggregate")
    def aggregate(self, event):
        url_name = registry.aggregate_url(event.aggregate_type)
        try:
            url = reverse(url_name, args=[event.aggregate_id]) if url_name else None
        except NoReverseMatch:
            url = None
        return format_html('<a href="{}">{}</a>', url, event.aggregate_id) if url else str(event.aggregate_id)

    @admin.display(description="actor")
    def actor(self, event):
        return (event.metadata or {}).get("actor", "")

    @admin.display(description="event data")
    def data(self, event):
        return pretty(event.event_data)

    @admin.display(description="metadata")
    def meta(self, event):
        return pretty(event.metadata)

    def get_search_results(self, request, queryset, search_term):
        """Exact matches on indexed columns, never a LIKE over every row."""
        term = search_term.strip()
        if not term:
            return queryset, False
        by_correlation = queryset.filter(metadata__contains={"correlation_id": term})
        try:
            return queryset.filter(aggregate_id=uuid.UUID(term)) | by_correlation, False
        except ValueError:
            return by_correlation, False


@admin.register(Snapshot)
class SnapshotAdmin(ReadOnlyAdmin):
    list_display = ["aggregate_id", "aggregate_type", "version", "schema_version", "taken_at"]
    search_fields = ["=aggregate_id"]
    fields = ["aggregate_id", "aggregate_type", "version", "schema_version", "taken_at", "pretty_state"]
    readonly_fields = fields

    @admin.display(description="state")
    def pretty_state(self, snapshot):
        return pretty(snapshot.state)


@admin.register(CommandLog)
class CommandLogAdmin(ReadOnlyAdmin):
    list_display = ["key", "command", "recorded_at"]
    search_fields = ["=key"]
    ordering = ["-recorded_at"]
    fields = ["key", "command", "arguments_hash", "recorded_at", "pretty_result"]
    readonly_fields = fields

    @admin.display(description="result")
    def pretty_result(self, entry):
        return pretty(entry.result)
