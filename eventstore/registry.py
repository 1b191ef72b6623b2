"""What apps tell the generic event store about their aggregates.

The event store never imports the apps that use it; they register here (in
their AppConfig.ready) the event types they write and the page that shows one
aggregate, so the admin can filter by type and link each event to its page.
"""

event_types: set[str] = set()
aggregate_urls: dict[str, str] = {}  # aggregate type -> URL name taking the aggregate id


def register_aggregate(aggregate_type: str, *, types, url_name: str | None = None) -> None:
    event_types.update(types)
    if url_name:
        aggregate_urls[aggregate_type] = url_name
