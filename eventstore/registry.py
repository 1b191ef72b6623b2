"""What a bounded context tells the generic event store about its aggregates.

The event store never imports the apps that use it. An app registers each
aggregate type here (in its AppConfig.ready): how to fold its events into a state,
its snapshot codec and policy, its upcasters, and the page that shows one. The
command unit (eventstore.commands), loading, verification and the admin then
work from this alone.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from eventstore.upcasting import Step, upcasters


class State(Protocol):
    """What the store needs of an aggregate's state: whose it is and how many events made it."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def version(self) -> int: ...


S = TypeVar("S", bound=State)


@dataclass(frozen=True)
class Aggregate(Generic[S]):
    """One aggregate type, as its app defines it."""

    type: str
    event_types: frozenset[str]
    # (aggregate id, [(stored version, event type, current-schema payload)], state to start from or None)
    # -> state, whose version is the last event's (versions the owner quarantined are skipped).
    # Raises for an event it cannot fold (the store reports the version; it never guesses).
    # Leaves the start state as it was: the store folds onto states it holds (snapshots.recent).
    fold: Callable[[uuid.UUID, Iterable[tuple[int, str, dict[str, Any]]], S | None], S]
    # The snapshot codec: a state as JSON and back. `from_snapshot` raises ValueError
    # (or KeyError, TypeError) for a state that is not this aggregate's shape.
    to_snapshot: Callable[[S], dict[str, Any]]
    from_snapshot: Callable[[dict[str, Any]], S]
    # Bump when the snapshot shape changes: snapshots of any other schema are ignored.
    state_schema: int = 1
    # A snapshot after every this many events; None: settings.EVENTSTORE_SNAPSHOT_EVERY; 0: never.
    snapshot_every: int | None = None
    # (event type, schema) -> the step that turns such a payload into the next schema's.
    upcasters: Mapping[tuple[str, int], Step] = field(default_factory=dict)
    url_name: str | None = None  # the page showing one aggregate, taking its id

    def new(self, aggregate_id: uuid.UUID) -> S:
        """The state before any event: version 0."""
        return self.fold(aggregate_id, (), None)


aggregates: dict[str, Aggregate[Any]] = {}


def register_aggregate(aggregate: Aggregate[S]) -> Aggregate[S]:
    if aggregate.type in aggregates:
        raise ValueError(f"an aggregate {aggregate.type!r} is already registered")
    for (event_type, from_schema), step in aggregate.upcasters.items():
        upcasters.register(event_type, from_schema, step)
    aggregates[aggregate.type] = aggregate
    return aggregate


def aggregate(aggregate_type: str) -> Aggregate[Any]:
    try:
        return aggregates[aggregate_type]
    except KeyError:
        raise LookupError(f"no aggregate type {aggregate_type!r} is registered") from None


def check_registered(known: Aggregate[Any]) -> None:
    """Refuse an aggregate that is not the one registered under its type: the command log names
    aggregates by type, and loading a recorded result goes through the registry."""
    if aggregates.get(known.type) is not known:
        raise LookupError(
            f"the aggregate type {known.type!r} is not registered (register_aggregate, in AppConfig.ready)"
        )


def event_types() -> set[str]:
    """Every event type a registered aggregate writes."""
    return {event_type for known in aggregates.values() for event_type in known.event_types}


def aggregate_url(aggregate_type: str) -> str | None:
    known = aggregates.get(aggregate_type)
    return known.url_name if known else None


@dataclass(frozen=True)
class Chore:
    """Periodic work an app asks the projection runner to do (expiring what is past its time, say)."""

    name: str
    run: Callable[[], int]  # returns how many things it did, for the runner's log
    every_seconds: float


chores: list[Chore] = []


def register_chore(name: str, run: Callable[[], int], *, every_seconds: float) -> Chore:
    chore = Chore(name, run, every_seconds)
    chores.append(chore)
    return chore
