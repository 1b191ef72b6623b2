"""Read-only browsing of events, snapshots and the command log.

History is never edited here: no add, change or delete. The lists never count
a million rows: the paginator counts at most CAP rows, and filters use indexes.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any, cast

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from eventstore import registry
from eventstore.models import CommandLog, Event, Snapshot

if TYPE_CHECKING:
    # Generic in django-stubs only: Django's Paginator and ModelAdmin take no type arguments at runtime.
    _Paginator = Paginator[Model]
    _ModelAdmin = admin.ModelAdmin[Model]
else:
    _Paginator, _ModelAdmin = Paginator, admin.ModelAdmin


class CappedPaginator(_Paginator):
    """Counts at most CAP rows (SELECT count(*) FROM (... LIMIT CAP)): pages past it are not offered."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        # The stubs allow any sliceable list; the admin's change list always hands over a queryset.
        rows = cast(QuerySet[Model], self.object_list)
        return rows[: self.CAP].count()


class ReadOnlyAdmin(_ModelAdmin):
    paginator = CappedPaginator
    show_full_result_count = False
    list_per_page = 50

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


def _page_of(aggregate_type: str, aggregate_id: object) -> str | None:
    """The page the app registered for an aggregate of this type (None if none, or the id is not one)."""
    url_name = registry.aggregate_url(aggregate_type)
    try:
        return reverse(url_name, args=[aggregate_id]) if url_name else None
    except NoReverseMatch:
        return None


def pretty(value: object) -> SafeString:
    return format_html(
        "<pre style='white-space: pre-wrap'>{}</pre>", json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    )


class EventTypeFilter(admin.SimpleListFilter):
    """The registered event types, without a DISTINCT over the whole table."""

    title = "event type"
    parameter_name = "event_type"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, str]]:
        return [(name, name) for name in sorted(registry.event_types())]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Event]) -> QuerySet[Event]:
        return queryset.filter(event_type=self.value()) if self.value() else queryset


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ["id", "event_type", "aggregate", "version", "created_at", "actor"]
    list_filter = [EventTypeFilter, ("created_at", admin.DateFieldListFilter)]
    search_fields = ["aggregate_id"]  # handled by get_search_results: ids and correlation ids only
    search_help_text = "An aggregate (account) id or a correlation id."
    ordering = ["-id"]
    fields = (
        "id",
        "aggregate_type",
        "aggregate",
        "version",
        "event_type",
        "created_at",
        "transaction_id",
        "data",
        "meta",
    )
    readonly_fields = fields

    @admin.display(description="aggregate")
    def aggregate(self, event: Event) -> str:
        url = _page_of(event.aggregate_type, event.aggregate_id)
        return format_html('<a href="{}">{}</a>', url, event.aggregate_id) if url else str(event.aggregate_id)

    @admin.display(description="actor")
    def actor(self, event: Event) -> str:
        actor: str = (event.metadata or {}).get("actor", "")
        return actor

    @admin.display(description="event data")
    def data(self, event: Event) -> SafeString:
        return pretty(event.event_data)

    @admin.display(description="metadata")
    def meta(self, event: Event) -> SafeString:
        return pretty(event.metadata)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Event], search_term: str
    ) -> tuple[QuerySet[Event], bool]:
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
    fields = ("aggregate_id", "aggregate_type", "version", "schema_version", "taken_at", "pretty_state")
    readonly_fields = fields

    @admin.display(description="state")
    def pretty_state(self, snapshot: Snapshot) -> SafeString:
        return pretty(snapshot.state)


@admin.register(CommandLog)
class CommandLogAdmin(ReadOnlyAdmin):
    list_display = ["command", "actor", "aggregates", "recorded_at", "key"]
    search_fields = ["=key"]
    ordering = ["-recorded_at"]
    fields = ("key", "actor", "command", "aggregates", "arguments_hash", "recorded_at", "pretty_result")
    readonly_fields = fields

    @admin.display(description="actor")
    def actor(self, entry: CommandLog) -> str:
        return entry.key.split(":", 1)[0]  # keys are "<actor>:<key>", and a username holds no colon

    @admin.display(description="what it changed")
    def aggregates(self, entry: CommandLog) -> SafeString:
        """The aggregates the command left, each a link to its page, at the version it left."""
        changed = (entry.result or {}).get("aggregates") or []
        pages = [(_page_of(str(kind), str(ident)), ident, version) for kind, ident, version in changed]
        return format_html_join(", ", '<a href="{}">{}</a> v{}', (page for page in pages if page[0]))

    @admin.display(description="result")
    def pretty_result(self, entry: CommandLog) -> SafeString:
        return pretty(entry.result)
