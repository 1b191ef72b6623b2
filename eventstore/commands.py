"""The command unit: every command of every app runs through `run_command`.

A handler loads the aggregates it needs from the `Unit`, lets its domain decide,
and records the new events on the unit. The store does the rest, in one durable
database transaction (all or nothing):
  * appends the events, dated by the database's clock read once the aggregates
    were locked, so that they never come before an aggregate's previous event;
  * applies the inline projections (their `apply`, the very one rebuild and verify run);
  * takes the snapshots the aggregate's policy says are due;
  * with an idempotency key, records the command in the command log: a repeat
    returns the first result and stores nothing. Keys are namespaced by the actor
    (stored as "<actor>:<key>"), so one member of staff's key never answers for another's;
  * after a lost race or a serialization failure, runs the whole handler again
    against fresh state, a few times, with a short random back-off.

Writers of one aggregate queue rather than race: the unit loads with the
aggregate's transaction-level advisory lock (several aggregates in `lock_key`
order, so that opposite transfers cannot deadlock). The unique (aggregate_id,
version) key stays the final guard against any writer that bypasses the lock.

A command costs two round trips (see db.command_transaction): BEGIN with the load
(which also reads the clock), then every write with COMMIT. A command that loads
nothing (opening an account) reads the clock instead.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from django.db import DatabaseError

from eventstore import context, db, projections, registry, snapshots
from eventstore.models import MAX_KEY_LENGTH, CommandLog
from eventstore.registry import Aggregate, S
from eventstore.store import (
    ConcurrencyConflict,
    EventStore,
    NewEvent,
    RecordedEvent,
    as_uuid,
    is_concurrency_conflict,
)

MAX_ATTEMPTS = 5
_COMMAND_LOG_KEY = "command_log_pkey"

# A repeated key fails this insert at COMMIT, which undoes the repeat's work.
_RECORD = """
INSERT INTO command_log (key, command, arguments_hash, result, recorded_at)
VALUES (%s, %s, %s, %s::jsonb, now())
"""

_store = EventStore()


class DomainEvent(Protocol):
    """What the unit needs of an event a domain decided."""

    @property
    def event_type(self) -> str: ...

    def to_data(self) -> dict[str, Any]: ...


@dataclass
class _Change:
    aggregate: Aggregate[Any]
    loaded: snapshots.Loaded[Any]  # the state before, with the chain hash the first new event links onto
    events: list[tuple[str, dict[str, Any]]]
    metadata: dict[str, Any]
    after: Any
    after_hash: bytes = b""  # known once the events are signed, at commit

    @property
    def before(self) -> Any:
        return self.loaded.state

    @property
    def follows(self) -> int:
        """The version the new events follow: the last one stored (see snapshots.Loaded.stored_version)."""
        return self.loaded.stored_version


class Unit:
    """One command's work: the aggregates it holds, locked, and the events it decided."""

    def __init__(self) -> None:
        # Each aggregate held: its type, and its state as loaded (with its chain hash).
        self._held: dict[uuid.UUID, tuple[Aggregate[Any], snapshots.Loaded[Any]]] = {}
        self._changes: list[_Change] = []
        self._clock: datetime | None = None

    def load(self, aggregate: Aggregate[S], *aggregate_ids: uuid.UUID | str) -> list[S]:
        """The aggregates as they stand, each locked until the command ends, in the order asked.

        An aggregate with no events comes back at version 0; whether that is an
        error is the handler's to say. Locks are taken in `lock_key` order within
        one call: a handler that needs several aggregates loads them in one call.
        """
        registry.check_registered(aggregate)
        ids = [as_uuid(aggregate_id) for aggregate_id in aggregate_ids]
        # In lock-key order, so that two commands locking the same aggregates cannot deadlock.
        new = sorted(set(ids) - set(self._held), key=snapshots.lock_key)
        for aggregate_id, loaded in zip(new, snapshots.load_each(aggregate, new, lock=True), strict=True):
            self._held[aggregate_id] = (aggregate, loaded)
            if loaded.clock is not None and (self._clock is None or loaded.clock > self._clock):
                self._clock = loaded.clock
        return [self._held[aggregate_id][1].state for aggregate_id in ids]

    def new(self, aggregate: Aggregate[S], aggregate_id: uuid.UUID | str) -> S:
        """A new aggregate this command starts (version 0): its id must be fresh, or the append conflicts."""
        registry.check_registered(aggregate)
        state = aggregate.new(as_uuid(aggregate_id))
        self._held[state.id] = (aggregate, snapshots.Loaded(state, None))
        return state

    def now(self) -> datetime:
        """The database's clock, read once the aggregates loaded so far were locked: the time the
        command decides at (the events it records are dated no earlier)."""
        if self._clock is None:
            self._clock = db.clock()
        return self._clock

    def record(self, state: S, events: Sequence[DomainEvent], metadata: dict[str, Any] | None = None) -> S:
        """Append `events` to the aggregate `state` is (as this unit holds it); return its state after them.

        `metadata` is stored with each of the events, over the metadata context.
        An aggregate's events are recorded in one call: they are appended by one
        statement, whose guard must see each version before the next.
        """
        if state.id not in self._held or self._held[state.id][1].state is not state:
            raise ValueError(f"record onto the state of {state.id} this unit loaded (or made), as it holds it now")
        if any(change.before.id == state.id for change in self._changes):
            raise ValueError(f"{state.id} already has events recorded in this command: record them all in one call")
        aggregate, loaded = self._held[state.id]
        pairs = [(event.event_type, event.to_data()) for event in events]
        follows = max(loaded.stored_version, state.version)
        versioned = [(follows + n, event_type, data) for n, (event_type, data) in enumerate(pairs, start=1)]
        after: S = aggregate.fold(state.id, versioned, state)
        self._changes.append(_Change(aggregate, loaded, pairs, metadata or {}, after))
        self._held[state.id] = (aggregate, loaded._replace(state=after))
        return after

    def _commit(self) -> list[Any]:
        """Queue the appends, inline projections and due snapshots; the states after, in the order recorded."""
        if not self._changes:
            return []
        moment = self._clock or db.clock()
        in_force = context.current()
        recorded: list[RecordedEvent] = []
        for change in self._changes:
            aggregate, before, after = change.aggregate, change.before, change.after
            metadata = {**in_force, **change.metadata}
            change.after_hash = _store.append(before.id, aggregate.type, change.follows,
                                              [NewEvent(event_type, data) for event_type, data in change.events],
                                              metadata=metadata, created_at=moment,
                                              previous_hash=change.loaded.chain_hash).chain_hash  # fmt: skip
            recorded += [
                RecordedEvent(before.id, aggregate.type, event_type, data, metadata, change.follows + n, moment)
                for n, (event_type, data) in enumerate(change.events, start=1)
            ]
            if snapshots.due(aggregate, before.version, after.version):
                snapshots.save(aggregate, after, change.after_hash)
        for projection in projections.inline():
            relevant = [event for event in recorded if event.aggregate_type in projection.aggregate_types]
            if relevant:
                projection.apply(relevant, projection.live())
        return [change.after for change in self._changes]

    def _committed(self) -> None:
        """Keep the states the command left, now that they are in the log (see snapshots.Recent)."""
        for change in self._changes:
            after = change.after
            kept = change.loaded._replace(state=after, chain_hash=change.after_hash, stored_version=after.version)
            snapshots.recent.keep(change.aggregate, kept)

    def _result(self) -> dict[str, Any]:
        """What the command log keeps of the outcome: each recorded aggregate's type, id and version after."""
        return {"aggregates": [[c.aggregate.type, str(c.after.id), c.after.version] for c in self._changes]}


class IdempotencyKeyReused(Exception):
    """The key already names a command with other arguments."""

    def __init__(self, command: str) -> None:
        super().__init__(
            f"This idempotency key was already used for a different {command} request (a form submitted "
            "before with other values); nothing was done. Open the form again to submit a new one."
        )


class InvalidIdempotencyKey(ValueError):
    """The key cannot be stored: not text, blank, too long, or with control characters."""


class Busy(Exception):
    """A lock the command needed was held for longer than the lock timeout; nothing was done."""


@dataclass
class Outcome:
    """What the caller of a command inside `outcome()` learns beyond its value."""

    replayed: bool = False  # answered from the command log: this key had already run


_outcome: contextvars.ContextVar[Outcome | None] = contextvars.ContextVar("command_outcome", default=None)


@contextmanager
def outcome() -> Iterator[Outcome]:
    """`with outcome() as seen: service(...)`; then `seen.replayed` tells a repeat from a first run."""
    seen = Outcome()
    token = _outcome.set(seen)
    try:
        yield seen
    finally:
        _outcome.reset(token)


def arguments_hash(command: str, arguments: dict[str, Any]) -> str:
    canonical = json.dumps({"command": command, "arguments": arguments}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _timed_out(error: DatabaseError) -> bool:
    """A lock wait past lock_timeout, or a statement past statement_timeout (not a cancel by hand)."""
    sqlstate = db.sqlstate(error)
    return sqlstate == db.LOCK_NOT_AVAILABLE or (
        sqlstate == db.QUERY_CANCELED and "statement timeout" in str(error.__cause__)
    )


def _key_taken(error: DatabaseError) -> bool:
    """Another transaction recorded this idempotency key first."""
    diag = getattr(error.__cause__, "diag", None)
    return db.sqlstate(error) == db.UNIQUE_VIOLATION and getattr(diag, "constraint_name", None) == _COMMAND_LOG_KEY


def check_key(key: object) -> str:
    if not isinstance(key, str) or not key.strip():
        raise InvalidIdempotencyKey("An idempotency key must be a non-empty string.")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidIdempotencyKey(f"An idempotency key must be at most {MAX_KEY_LENGTH} characters.")
    if not key.isprintable():
        raise InvalidIdempotencyKey("An idempotency key must be printable text, without control characters.")
    try:
        key.encode()
    except UnicodeEncodeError:
        raise InvalidIdempotencyKey("An idempotency key must be valid text (it has a lone surrogate).") from None
    return key


def namespaced(key: str, metadata: dict[str, Any] | None = None) -> str:
    """The key as stored: prefixed by whoever is acting, so keys never cross between people."""
    return f"{(metadata or context.current()).get('actor') or 'anonymous'}:{key}"


def already_done(keys: Iterable[str]) -> dict[str, list[Any]]:
    """Of these keys, those the acting person's commands already used, each with the
    states its command left the aggregates in (as it returned them)."""
    stored = {namespaced(check_key(key)): key for key in keys}
    return {stored[row.key]: _states(row.result) for row in CommandLog.objects.filter(key__in=list(stored))}


def _recorded(key: str, command: str, digest: str) -> CommandLog | None:
    """The command already recorded under `key`, if it is this very command."""
    previous = CommandLog.objects.filter(key=key).first()
    if previous is not None and (previous.command != command or previous.arguments_hash != digest):
        raise IdempotencyKeyReused(command)
    return previous


def _states(result: dict[str, Any]) -> list[Any]:
    """The states a recorded command left, loaded at the versions its result names."""
    if "aggregates" in result:
        changed = [
            (aggregate_type, aggregate_id, version) for aggregate_type, aggregate_id, version in result["aggregates"]
        ]
    else:
        # Results recorded before the store kept the unit named ids and versions only.
        changed = [(_type_in_log(aggregate_id), aggregate_id, version) for aggregate_id, version in result["accounts"]]
    return [
        # On the primary, where the command ran: a replica may not have replayed it yet.
        snapshots.load(registry.aggregate(aggregate_type), uuid.UUID(aggregate_id), up_to_version=version).state
        for aggregate_type, aggregate_id, version in changed
    ]  # fmt: skip


def _type_in_log(aggregate_id: str) -> str:
    row = db.fetchone(
        "SELECT aggregate_type FROM events WHERE aggregate_id = %s AND version = 1", [uuid.UUID(aggregate_id)]
    )
    if row is None:
        raise LookupError(f"the command log names aggregate {aggregate_id}, which has no events")
    return str(row[0])


def run_command(
    command: str,
    *,
    arguments: dict[str, Any],
    idempotency_key: str | None,
    handle: Callable[[Unit], None],
) -> list[Any]:
    """Run `handle(unit)` in a transaction of its own; return the states of what it recorded, in order.

    With a key already used for this very command, return the states that first
    run left (loaded at the versions it recorded) and store nothing. Raises
    InvalidIdempotencyKey for a key that cannot be stored, IdempotencyKeyReused
    for a key that named another command, Busy when a lock wait timed out, and
    ConcurrencyConflict naming the aggregates when every attempt lost a race.
    Whatever `handle` raises (a rule refusing the command) ends it with nothing stored.
    """
    metadata = context.current()
    key = None if idempotency_key is None else namespaced(check_key(idempotency_key), metadata)
    digest = arguments_hash(command, arguments)
    # An explicit causation (the admin's "admin:freeze") says more than a fresh id.
    causation = metadata.get("causation_id") or str(uuid.uuid4())
    for attempt in range(1, MAX_ATTEMPTS + 1):
        unit = Unit()
        try:
            with (
                db.command_transaction(),
                context.metadata_context(correlation_id=metadata["correlation_id"], causation_id=causation),
            ):
                handle(unit)
                states = unit._commit()
                if key:
                    db.write(_RECORD, [key, command, digest, json.dumps(unit._result())])
            unit._committed()
            return states
        except DatabaseError as error:
            if key and _key_taken(error):
                return _replay(_recorded(key, command, digest))
            if _timed_out(error):
                raise Busy(f"{command}: {str(error.__cause__).splitlines()[0]}") from error
            if not is_concurrency_conflict(error):
                raise
            if attempt == MAX_ATTEMPTS:
                raise _gave_up(command, attempt, unit) from error
            time.sleep(random.uniform(0, 0.005 * 2**attempt))
        except Exception:
            # A refused repeat must still answer with the first result (say, a
            # withdrawal that emptied the account, submitted twice).
            if key and (previous := _recorded(key, command, digest)) is not None:
                return _replay(previous)
            raise
    raise AssertionError("unreachable")


def _replay(previous: CommandLog | None) -> list[Any]:
    assert previous is not None  # the key was taken: its row is there
    if (seen := _outcome.get()) is not None:
        seen.replayed = True
    return _states(previous.result)


def _gave_up(command: str, attempts: int, unit: Unit) -> ConcurrencyConflict:
    detail = f"{command} gave up after {attempts} attempts"
    if not unit._changes:  # lost before it recorded anything (a deadlock while locking)
        return ConcurrencyConflict(None, None, detail)
    (first_id, first_version), *others = [(change.before.id, change.follows) for change in unit._changes]
    if others:
        detail += "; also " + ", ".join(f"aggregate {i} at version {v}" for i, v in others)
    return ConcurrencyConflict(first_id, first_version, detail)
