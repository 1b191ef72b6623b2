"""What apps tell the generic event store about their aggregates.

The event store never imports the apps that use it; they register here (in
their AppConfig.ready) the event types they write, the page that shows one
aggregate (so the admin can filter by type and link each event to its page),
and how to replay one into the state its snapshots hold (so verify_event_store
can check every snapshot against the log).
"""

from typing import Callable, NamedTuple


class SnapshotReplay(NamedTuple):
    schema: int  # the state schema current snapshots carry; others are ignored by every load
    replay: Callable  # (aggregate id, [(event type, upcast payload)]) -> the state a snapshot would hold


event_types: set[str] = set()
aggregate_urls: dict[str, str] = {}  # aggregate type -> URL name taking the aggregate id
snapshot_replays: dict[str, SnapshotReplay] = {}  # aggregate type -> how its snapshots are checked


def register_aggregate(
    aggregate_type: str, *, types, url_name: str | None = None, snapshot: SnapshotReplay | None = None
) -> None:
    event_types.update(types)
    if url_name:
        aggregate_urls[aggregate_type] = url_name
    if snapshot:
        snapshot_replays[aggregate_type] = snapshot
