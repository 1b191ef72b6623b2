"""EventStore: the only way events get into (and back out of) the events table.

`append` joins the caller's transaction, so a service can append to two
aggregates and update read models atomically; it never opens a savepoint, so a
failed append makes the whole surrounding transaction fail, as a command should.
"""

from __future__ import annotations

import json
import queue
import threading
import uuid
from collections.abc import Generator, Iterator, Mapping, Sequence
from contextlib import closing, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import orjson
import psycopg
from django.db import DatabaseError, transaction
from psycopg import sql
from psycopg.types.datetime import TimestamptzLoader
from psycopg.types.string import TextLoader

from eventstore import context, db, signing
from eventstore.integrity import Row
from eventstore.upcasting import upcasters

UNIQUE_VERSION_CONSTRAINT = "events_aggregate_id_version_key"
# Lost races: a duplicate (aggregate_id, version), the guard's "written by a later
# transaction", or a deadlock PostgreSQL broke in our favour of retrying.
_CONFLICT_SQLSTATES = {"40001", "40P01"}
MAX_NAME_LENGTH = 255


class ConcurrencyConflict(Exception):
    """Another writer appended to the aggregate first; reload and decide again."""

    def __init__(self, aggregate_id: uuid.UUID | None, expected_version: int | None, detail: str = "") -> None:
        self.aggregate_id = aggregate_id
        self.expected_version = expected_version
        if aggregate_id is None:
            super().__init__(detail or "a concurrent writer got there first")
            return
        super().__init__(
            f"aggregate {aggregate_id} moved past version {expected_version} "
            f"while this command was deciding{': ' + detail if detail else ''}"
        )


class InvalidAppend(ValueError):
    """The append call itself is malformed; nothing was sent to the database."""


class Position(NamedTuple):
    """A commit-safe place in the global log: (writing transaction, event id)."""

    transaction_id: int
    event_id: int


START = Position(0, 0)


@dataclass(frozen=True)
class NewEvent:
    event_type: str
    data: dict[str, Any]


class StoredEvent(NamedTuple):
    """An event as the table holds it. A tuple: immutable and cheap to make in bulk."""

    id: int
    aggregate_id: uuid.UUID
    aggregate_type: str
    event_type: str
    data: dict[str, Any]
    metadata: Mapping[str, Any]  # METADATA_NOT_READ from a stream told not to read it
    version: int
    created_at: datetime
    transaction_id: int

    @property
    def position(self) -> Position:
        return Position(self.transaction_id, self.id)


class Page(NamedTuple):
    """One batch of read_all and the position to resume from."""

    events: list[StoredEvent]
    position: Position


class RecordedEvent(NamedTuple):
    """An event a command has just appended and not yet committed: all but its place in the log.

    Inline projections are applied to these inside the command's transaction, and to
    StoredEvents by rebuild and verify: they read only the fields both have.
    """

    aggregate_id: uuid.UUID
    aggregate_type: str
    event_type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    version: int
    created_at: datetime


COLUMNS = (
    "id, aggregate_id, aggregate_type, event_type, event_data, metadata, version, created_at, transaction_id::text"
)

_INSERT = (
    "INSERT INTO events (aggregate_id, aggregate_type, event_type, event_data, metadata, version, created_at, "
    "chain_hash, key_id, mac) VALUES "
)
_ROW = "(%s, %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s, %s, %s)"

NOT_QUARANTINED = "NOT EXISTS (SELECT 1 FROM event_quarantine q WHERE q.event_id = events.id)"

# The events up to a version (quarantined ones skipped), for the chain head a direct append follows.
_UP_TO = "SELECT * FROM events_load(%s, NULL, %s, NULL)"


class Head(NamedTuple):
    """Where an aggregate's history ends after an append: its version and that event's chain hash."""

    version: int
    chain_hash: bytes


def insert_statement(count: int) -> str:
    """The INSERT for `count` events: one statement, rows inserted (and guarded) in order."""
    return _INSERT + ", ".join([_ROW] * count)


def after(position: Position, *, until: Position | None = None, horizon: bool = True) -> tuple[str, list[Any]]:
    """The WHERE clause (and its parameters) of the events after `position` in the global order.

    With `horizon`, only transactions that have all ended (committed or rolled back)
    are read, so a transaction that commits later can never land behind a reader's
    position. Without it, everything this transaction can see, which is right only
    where every writer of what the reader keeps is locked out. `until` bounds it.
    """
    clause = "(transaction_id, id) > (%s::text::xid8, %s)"
    params: list[Any] = [str(position.transaction_id), position.event_id]
    if horizon:
        clause += " AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())"
    if until is not None:
        clause += " AND (transaction_id, id) <= (%s::text::xid8, %s)"
        params += [str(until.transaction_id), until.event_id]
    return clause, params


# ORDER BY names the table's columns: unqualified, "transaction_id" would be the
# ::text output column, and "10000" sorts before "9999".
GLOBAL_ORDER = "ORDER BY events.transaction_id, events.id"
FETCH = 2_000  # rows per fetch from the stream's server-side cursor


def stream(start: Position = START, *, until: Position | None = None, horizon: bool = True, limit: int | None = None,
           metadata: bool = True) -> Generator[list[StoredEvent], None, None]:  # fmt: skip
    """The log after `start` in commit-safe global order, in batches, on the primary.

    The one reader of the whole log: projections, their rebuild and verification,
    read_all and the checks all come through here. Each aggregate's events come in
    version order (the insert guard sees to it), and resuming from the position of
    the last event read never skips a committed event. The events the owner
    quarantined are skipped, as every replay skips them. Runs inside a transaction
    (a server-side cursor lives in one); close the iterator to free the cursor early.
    Without `metadata`, the events' metadata is neither read nor decoded (METADATA_NOT_READ):
    most projections have no use for it, and it is a third of what a rebuild would decode.
    """
    query, params = _stream_query(start, until, horizon, limit, metadata)
    django_connection = db.wrapper(db.PRIMARY)
    with (
        django_connection.wrap_database_errors,
        psycopg.ServerCursor(django_connection.connection, "events_stream") as cursor,
    ):
        yield from _batches(cursor, query, params, metadata)


Batches = Generator[list[StoredEvent], None, None]


def stream_ahead(start: Position = START, *, until: Position | None = None, horizon: bool = True,
                 limit: int | None = None, metadata: bool = True, snapshot: str | None = None) -> Batches:  # fmt: skip
    """`stream`, read and decoded a few batches ahead by a thread on a connection of its own: the
    server reads the next batches, and Python decodes them, while the caller waits on its writes.
    A rebuild or a verification, whose time is the sum of both, goes faster so.

    The reader's transaction sees what was committed when it began, or, given `snapshot` (from
    pg_export_snapshot), exactly what the caller's transaction sees.
    """
    query, params = _stream_query(start, until, horizon, limit, metadata)
    ahead: queue.Queue[list[StoredEvent] | BaseException | None] = queue.Queue(maxsize=AHEAD)
    stopped = threading.Event()

    def read() -> None:
        try:
            with psycopg.connect(**db.conninfo()) as connection, connection.transaction():
                if snapshot is not None:
                    connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    connection.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
                connection.adapters.register_loader("jsonb", TextLoader)  # as Django's connections read it
                with psycopg.ServerCursor(connection, "events_ahead") as cursor:
                    for batch in _batches(cursor, query, params, metadata):
                        if stopped.is_set():
                            return
                        ahead.put(batch)
            ahead.put(None)
        except BaseException as error:  # handed to the caller, which raises it
            ahead.put(error)

    reader = threading.Thread(target=read, name="events-ahead", daemon=True)
    reader.start()
    try:
        while (item := ahead.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stopped.set()
        while reader.is_alive():  # unblock a reader waiting to put a batch nobody will take
            with suppress(queue.Empty):
                ahead.get(timeout=0.05)
        reader.join()


AHEAD = 4  # batches a stream_ahead reader may hold, decoded, before the caller takes them


def _stream_query(start: Position, until: Position | None, horizon: bool, limit: int | None,
                  metadata: bool) -> tuple[str, list[Any]]:  # fmt: skip
    where, params = after(Position(*start), until=until, horizon=horizon)
    columns = COLUMNS if metadata else COLUMNS.replace("metadata", "NULL")
    query = f"SELECT {columns} FROM events WHERE {where} AND {NOT_QUARANTINED} {GLOBAL_ORDER}"
    if limit is not None:
        query += " LIMIT %s"
        params.append(limit)
    return query, params


def _batches(cursor: psycopg.ServerCursor[Any], query: str, params: list[Any],
             metadata: bool) -> Iterator[list[StoredEvent]]:  # fmt: skip
    # psycopg's own (C) timestamp loader: Django's wraps it in Python, a cost per row
    # that a rebuild of millions of events notices. Both give aware UTC datetimes.
    cursor.adapters.register_loader("timestamptz", TimestamptzLoader)
    cursor.execute(query, params)
    unread = None if metadata else METADATA_NOT_READ
    while rows := cursor.fetchmany(FETCH):
        yield [row_to_event(row, unread) for row in rows]


def backlog(position: Position, *, limit: int | None = None) -> tuple[int, datetime | None]:
    """How many events lie after `position` (committed or not), and when the oldest of them was written.

    With `limit`, counts no further than that (a page asks, and a long backlog would cost it a scan).
    """
    where, params = after(position, horizon=False)
    waiting = f"SELECT created_at FROM events WHERE {where}"
    if limit is not None:
        waiting, params = f"{waiting} LIMIT %s", [*params, limit]
    row = db.fetchone(f"SELECT count(*), min(created_at) FROM ({waiting}) AS waiting", params, alias=db.reads())
    return row or (0, None)


def _parsed(text: str) -> Any:
    """JSON text as json.loads reads it, by orjson, several times faster (a rebuild reads every event).
    orjson reads an integer past 64 bits as a float; events hold no floats, so one means the standard
    library must read the text again, exactly."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
    return json.loads(text) if _holds_a_float(value) else value


def _holds_a_float(value: Any) -> bool:
    kind = type(value)
    if kind is dict:
        value = value.values()
    elif kind is not list:
        return kind is float
    for item in value:  # a payload's values are mostly text and integers: a look at each type
        kind = type(item)
        if kind is float or ((kind is dict or kind is list) and _holds_a_float(item)):
            return True
    return False


def row_to_event(row: tuple[Any, ...], unread: Mapping[str, Any] | None = None) -> StoredEvent:
    """The event of a row of COLUMNS; `unread`: its metadata, when the query did not read it."""
    # Django's connections hand jsonb over as text so that JSONField decodes it. Positional
    # arguments: a rebuild makes millions of these, and keywords make each cost twice as much.
    metadata = unread if unread is not None else _parsed(row[5]) if row[5] is not None else {}
    return StoredEvent(row[0], row[1], row[2], row[3], upcasters.upcast(row[3], _parsed(row[4])), metadata,
                       row[6], row[7], int(row[8]))  # fmt: skip


class _MetadataNotRead(Mapping[str, Any]):
    """The metadata of an event streamed without it: a projection that reads metadata must say so
    (Projection.reads_metadata), and one that forgot learns it at its first read, not from wrong rows."""

    def _refuse(self, *args: object) -> Any:
        raise LookupError("this stream did not read the events' metadata: stream(..., metadata=True)")

    __getitem__ = __iter__ = __len__ = _refuse


METADATA_NOT_READ: Mapping[str, Any] = _MetadataNotRead()


def as_uuid(aggregate_id: object) -> uuid.UUID:
    if isinstance(aggregate_id, uuid.UUID):
        return aggregate_id
    try:
        return uuid.UUID(str(aggregate_id))
    except ValueError:
        raise InvalidAppend(f"aggregate id {aggregate_id!r} is not a UUID") from None


def _check_name(what: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_LENGTH:
        raise InvalidAppend(f"{what} must be a non-empty string of at most {MAX_NAME_LENGTH} characters, got {value!r}")
    return value


def _to_json(what: str, value: object) -> str:
    if not isinstance(value, dict):
        raise InvalidAppend(f"{what} must be a JSON object (dict), got {type(value).__name__}")
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as error:
        raise InvalidAppend(f"{what} is not JSON-serialisable: {error}") from None
    if "\\u0000" in text:
        raise InvalidAppend(f"{what} contains a NUL character, which PostgreSQL cannot store")
    return text


def _transaction_start() -> datetime:
    """now(): the time the column's default would give, for a writer that gave none."""
    row = db.fetchone("SELECT now()")
    assert row is not None
    moment: datetime = row[0]
    return moment


def chain_head(aggregate_id: uuid.UUID, version: int) -> bytes:
    """The chain hash of the aggregate at `version`: stored, or worked out over the events stored unsigned."""
    events = [Row(*row) for row in db.fetchall(_UP_TO, [aggregate_id, version]) if row[0] is None]
    if events and events[-1].chain_hash is not None:
        return bytes(events[-1].chain_hash)
    chain = signing.GENESIS
    for row in events:
        metadata = None if row.metadata is None else signing.parse(row.metadata)
        content = signing.event_content(aggregate_id, row.aggregate_type or "", row.version, row.event_type or "",
                                        signing.parse(row.payload or "null"), metadata, row.created or "")  # fmt: skip
        chain = signing.link(chain, content)
    return chain


def is_concurrency_conflict(error: Exception) -> bool:
    """Is this database error a lost race (duplicate version, serialization failure, deadlock)?"""
    sqlstate = db.sqlstate(error)
    if sqlstate in _CONFLICT_SQLSTATES:
        return True
    diag = getattr(error.__cause__, "diag", None)
    return sqlstate == db.UNIQUE_VIOLATION and getattr(diag, "constraint_name", None) == UNIQUE_VERSION_CONSTRAINT


class EventStore:
    """Append to and read from the events table on Django's default connection."""

    def append(
        self,
        aggregate_id: uuid.UUID | str,
        aggregate_type: str,
        expected_version: int,
        events: Sequence[NewEvent],
        metadata: dict[str, Any] | None = None,
        created_at: datetime | None = None,
        previous_hash: bytes | None = None,
    ) -> Head:
        """Store `events`, signed, as versions expected_version+1.. of the aggregate; return its new head.

        `created_at` is the events' time: a command gives the database's clock read
        once it held the aggregate's lock (see commands.Unit.load), so
        that it never comes before the aggregate's previous event; the guard
        refuses one that does, or one far from the database's clock. Without it,
        the database's clock is read first.

        `previous_hash` is the chain hash of version `expected_version`, which the
        first new event links onto (see eventstore.signing): a command gives the one
        its verified load ended on. Without it, it is read from the log, unchecked:
        only a command decides on verified state.

        All or none, in one statement, inside the caller's transaction if there is
        one (a failure then leaves that transaction to roll back). `metadata` is laid
        over the current metadata context (see context.py) and stored with every
        event of the call. Raises InvalidAppend, before anything reaches the
        database, when the call is malformed, and ConcurrencyConflict when another
        writer got there first. Inside a command the insert is held back and sent
        with the command's other writes (see db.command_transaction): a lost race
        then surfaces at COMMIT, as an error that `is_concurrency_conflict` recognises.
        """
        aggregate_id = as_uuid(aggregate_id)
        _check_name("aggregate type", aggregate_type)
        if isinstance(expected_version, bool) or not isinstance(expected_version, int) or expected_version < 0:
            raise InvalidAppend(f"expected version must be an integer of 0 or more, got {expected_version!r}")
        events = list(events)
        if not events:
            raise InvalidAppend("append needs at least one event")
        payloads = []
        for event in events:
            if not isinstance(event, NewEvent):
                raise InvalidAppend(f"events must be NewEvent instances, got {type(event).__name__}")
            event_type = _check_name("event type", event.event_type)
            payloads.append((event_type, event.data, _to_json(f"data of {event_type}", event.data)))
        merged = {**context.current(), **(metadata or {})}
        metadata_json = _to_json("metadata", merged)
        moment = created_at or _transaction_start()
        chain = previous_hash or (
            signing.GENESIS if expected_version == 0 else chain_head(aggregate_id, expected_version)
        )
        keys = signing.keys()
        params: list[Any] = []
        for version, (event_type, data, payload) in enumerate(payloads, start=expected_version + 1):
            try:
                chain, key_id, mac = signing.sign_event(keys, chain, aggregate_id, aggregate_type, version, event_type,
                                                        data, merged, moment)  # fmt: skip
            except signing.UnsignableValue as error:
                raise InvalidAppend(f"{event_type} cannot be signed exactly: {error}") from None
            params += [aggregate_id, aggregate_type, event_type, payload, metadata_json, version, moment,
                       chain, key_id, mac]  # fmt: skip
        try:
            db.write(insert_statement(len(events)), params)
        except DatabaseError as error:
            if is_concurrency_conflict(error):
                raise ConcurrencyConflict(
                    aggregate_id, expected_version, str(error.__cause__).splitlines()[0]
                ) from error
            raise
        return Head(expected_version + len(events), chain)

    def load(
        self,
        aggregate_id: uuid.UUID | str,
        *,
        after_version: int = 0,
        up_to_version: int | None = None,
        as_of: datetime | None = None,
    ) -> list[StoredEvent]:
        """The aggregate's events in version order, optionally bounded by version or time.

        `as_of` keeps the events up to the version the aggregate had at that moment (see version_at).
        """
        if as_of is not None:
            at_time = self.version_at(aggregate_id, as_of)
            up_to_version = at_time if up_to_version is None else min(up_to_version, at_time)
        sql = f"SELECT {COLUMNS} FROM events WHERE aggregate_id = %s AND version > %s"
        params: list[Any] = [as_uuid(aggregate_id), after_version]
        if up_to_version is not None:
            sql += " AND version <= %s"
            params.append(up_to_version)
        return [row_to_event(row) for row in db.fetchall(sql + " ORDER BY version", params, alias=db.reads())]

    def load_after_version(self, aggregate_id: uuid.UUID | str, version: int) -> list[StoredEvent]:
        """The events after `version`: the tail to fold onto a snapshot taken at `version`."""
        return self.load(aggregate_id, after_version=version)

    def version_at(self, aggregate_id: uuid.UUID | str, moment: datetime) -> int:
        """The aggregate's version as it stood at `moment`: its last event written at or before it (0: none)."""
        row = db.fetchone(
            "SELECT COALESCE(max(version), 0) FROM events WHERE aggregate_id = %s AND created_at <= %s",
            [as_uuid(aggregate_id), moment],
            alias=db.reads(),
        )
        return int(row[0]) if row else 0

    def read_all(self, after: Position = START, limit: int = 1000) -> Page:
        """Up to `limit` committed events after `after`, in global order: one page of `stream`.

        Resume from the returned position: no committed event is ever skipped, and
        each aggregate's events come in version order.
        """
        if limit < 1:
            raise ValueError(f"limit must be 1 or more, got {limit}")
        after = Position(*after)
        with transaction.atomic(using=db.PRIMARY), closing(stream(after, limit=limit)) as batches:
            events = [event for batch in batches for event in batch]
        return Page(events=events, position=events[-1].position if events else after)
