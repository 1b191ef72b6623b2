"""Projections: read models fed by events, each exactly once and in order.

A projection names the tables it owns and applies batches of events to them.
Inline projections are applied by commands in their own transaction (so they
have no checkpoint: they are as current as the log). Asynchronous ones are
applied after commit by `catch_up`, which stores the projection's checkpoint
(the commit-safe position of the last event applied) in the same transaction
as the rows it wrote: a crash never applies an event twice or skips one. An
event whose data a projection cannot apply stops it just before that event
(ProjectionStopped), recorded on its checkpoint, until the code or the event is fixed.

Rebuild builds every table of a projection afresh in shadow tables while
commands go on, then swaps them in one short transaction; verify replays the
log into temporary tables and compares them with the live ones.
"""

from __future__ import annotations

import functools
import re
import zlib
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict, TypeVar, Unpack

import psycopg
from django.db import DatabaseError, DataError, IntegrityError, connection, transaction
from django.utils import timezone
from psycopg import sql

from eventstore.db import Params
from eventstore.models import ProjectionCheckpoint
from eventstore.store import START, Position, RecordedEvent, StoredEvent, backlog, stream, stream_ahead

CHUNK = 20_000  # events per committed step of a catch-up or rebuild
# Runner locks use the two-int advisory-lock space, which never meets the
# one-bigint space of the per-aggregate writer locks.
LOCK_CLASS = 0x5052  # "PR"


def _caused_by_the_event(error: Exception) -> bool:
    """Whether applying the event raised `error` because of what the event says, so that it would again.

    A Python error (KeyError, ValueError, a rule refusing the event, ...) or a row
    the database refuses (IntegrityError, DataError) is the event's: the projection
    stops at it. A lost connection, a timeout or a lock (OperationalError and the
    other database errors), or no memory left, says nothing about it.
    """
    if isinstance(error, (IntegrityError, DataError, psycopg.IntegrityError, psycopg.DataError)):
        return True
    return not isinstance(error, (DatabaseError, psycopg.Error, MemoryError))


class ProjectionStopped(Exception):
    """`projection` cannot apply an event: it stops before it until the code or the event is fixed."""

    def __init__(self, projection: str, event: StoredEvent, error: Exception) -> None:
        self.projection, self.event_id, self.aggregate_id = projection, event.id, event.aggregate_id
        self.version, self.event_type = event.version, event.event_type
        lines = str(error).strip().splitlines()
        self.reason = f"{type(error).__name__}: {lines[0][:300]}" if lines else type(error).__name__
        self.summary = (
            f"stopped at event {event.id} ({event.aggregate_type} {event.aggregate_id} "
            f"v{event.version} {event.event_type}): {self.reason}"
        )
        # Set by whoever streamed the event: the position just before it, and how many events came before it.
        self.position: Position | None = None
        self.applied = 0
        super().__init__(f"{projection}: {self.summary}")


class Projection:
    """Subclass and register. `apply` writes rows for `events` into `tables[name]`.

    `tables` maps each owned table to the physical table to write: the live one,
    a rebuild's shadow, or a verification's temporary copy. One `apply` serves
    every path: the command unit calls an inline projection's with the events a
    command has just appended (RecordedEvents, inside its transaction), and
    catch-up, rebuild and verify call it with StoredEvents from the log. It reads
    and writes through eventstore.db, whose statements a command queues in order.
    """

    name: str = ""
    tables: tuple[str, ...] = ()
    aggregate_types: frozenset[str] = frozenset()  # the events it reads; others only move its position
    reads_metadata: bool = False  # whether apply reads the events' metadata: streams leave it out otherwise
    inline: bool = False
    description: str = ""

    def apply(self, events: Sequence[RecordedEvent | StoredEvent], tables: dict[str, str]) -> None:
        raise NotImplementedError

    def live(self) -> dict[str, str]:
        return {table: table for table in self.tables}


registry: dict[str, Projection] = {}


def register(projection: Projection) -> Projection:
    registry[projection.name] = projection
    return projection


def named(names: Sequence[str]) -> list[Projection]:
    """The registered projections called `names` (all of them for an empty list)."""
    unknown = [name for name in names if name not in registry]
    if unknown:
        raise KeyError(f"no projection called {', '.join(unknown)}; there are: {', '.join(sorted(registry))}")
    return [registry[name] for name in names] if names else list(registry.values())


def asynchronous(names: Sequence[str] = ()) -> list[Projection]:
    return [projection for projection in named(names) if not projection.inline]


def inline() -> list[Projection]:
    """The projections every command applies in its own transaction."""
    return [projection for projection in registry.values() if projection.inline]


# --- checkpoints ----------------------------------------------------------------------


def checkpoint(name: str, *, lock: bool = False) -> ProjectionCheckpoint:
    """The checkpoint row (created at the start of the log if new); `lock` holds it to commit."""
    ProjectionCheckpoint.objects.get_or_create(name=name)
    rows = ProjectionCheckpoint.objects.filter(name=name)
    return (rows.select_for_update() if lock else rows).get()


def _advance(row: ProjectionCheckpoint, position: Position, applied: int) -> None:
    ProjectionCheckpoint.objects.filter(name=row.name).update(
        transaction_id=position.transaction_id,
        event_id=position.event_id,
        events_applied=row.events_applied + applied,
        updated_at=timezone.now(),
    )


def position_of(row: ProjectionCheckpoint) -> Position:
    return Position(row.transaction_id, row.event_id)


def _record_stop(row: ProjectionCheckpoint, stopped: ProjectionStopped | None) -> None:
    """Record where the projection stopped (since when, if it already had), or clear it once it went on."""
    fields: dict[str, int | str | datetime | None]
    if stopped is None:
        fields = {"failed_event_id": None, "failure": None, "failed_at": None}
    else:
        since = row.failed_at if row.failed_event_id == stopped.event_id else timezone.now()
        fields = {"failed_event_id": stopped.event_id, "failure": stopped.summary, "failed_at": since}
    ProjectionCheckpoint.objects.filter(name=row.name).update(**fields)


class _StreamOptions(TypedDict, total=False):
    """What `_apply_all` passes on to `stream`."""

    until: Position | None
    horizon: bool
    limit: int | None


def _apply_all(projection: Projection, tables: dict[str, str], after: Position, *, careful: bool,
               **stream_options: Unpack[_StreamOptions]) -> tuple[Position, int]:  # fmt: skip
    """Apply the events after `after`; return where it got and how many.

    At an event the projection cannot apply, raises _Refused, or, `careful`, ProjectionStopped
    with the events before it applied.
    """
    position, applied = after, 0
    # Closed even when stopped, so that the next stream may declare its cursor under the same name.
    with closing(stream(after, metadata=projection.reads_metadata, **stream_options)) as batches:
        for batch in batches:
            relevant = [event for event in batch if event.aggregate_type in projection.aggregate_types]
            if relevant:
                try:
                    _apply_batch(projection, relevant, tables, careful=careful)
                except ProjectionStopped as stopped:
                    before = next(n for n, event in enumerate(batch) if event.id == stopped.event_id)
                    stopped.position = batch[before - 1].position if before else position
                    stopped.applied = applied + before
                    raise
            position, applied = batch[-1].position, applied + len(batch)
    return position, applied


class _Refused(Exception):
    """A projection could not apply an event of a batch applied with no savepoint: the transaction
    is lost, and its caller runs it again carefully (_quickly_else_carefully)."""


def _apply_batch(projection: Projection, events: list[StoredEvent], tables: dict[str, str], *, careful: bool) -> None:
    """Apply `events` to `tables`.

    Quickly (not `careful`): as they are, an event the projection cannot apply raising _Refused.
    Carefully: in a savepoint, and when an event is refused, one at a time to find it, raising
    ProjectionStopped with the events before it applied. Savepoints cost a round trip each and a
    subtransaction that the rest of the transaction pays for: a rebuild or verification, with
    thousands of batches, takes a fifth longer with them, to find an event that is mostly not there.
    """
    if not careful:
        try:
            projection.apply(events, tables)
        except Exception as refused:
            if not _caused_by_the_event(refused):
                raise
            raise _Refused from refused
        return
    if _error(projection, events, tables) is None:
        return
    # One at a time, to find the event: projections fold from the rows already
    # written, so the events before it write what the whole batch would have.
    for event in events:
        if (error := _error(projection, [event], tables)) is not None:
            raise ProjectionStopped(projection.name, event, error) from error


def _error(projection: Projection, events: list[StoredEvent], tables: dict[str, str]) -> Exception | None:
    """Apply `events` in a savepoint: None, or the error an event caused (and nothing written)."""
    try:
        with transaction.atomic():
            projection.apply(events, tables)
    except Exception as error:
        if not _caused_by_the_event(error):
            raise
        return error
    return None


_Result = TypeVar("_Result")


def _quickly_else_carefully(run: Callable[[bool], _Result]) -> _Result:
    """`run(careful)`, a whole transaction, quickly; if a batch was refused, again carefully (_apply_batch)."""
    try:
        return run(False)
    except _Refused:
        return run(True)


def _step(projection: Projection, name: str, tables: dict[str, str], *, limit: int) -> int:
    """Apply up to `limit` events after the checkpoint `name` and advance it, in one transaction.

    At an event the projection cannot apply, commits the events before it and
    the checkpoint just before it, with the stop recorded, then raises ProjectionStopped.
    """
    return _quickly_else_carefully(functools.partial(_step_once, projection, name, tables, limit=limit))


def _step_once(projection: Projection, name: str, tables: dict[str, str], careful: bool, *, limit: int) -> int:
    stopped = None
    with transaction.atomic():
        row = checkpoint(name, lock=True)
        try:
            position, applied = _apply_all(projection, tables, position_of(row), limit=limit, careful=careful)
        except ProjectionStopped as error:
            assert error.position is not None  # _apply_all sets it before the stop leaves it
            stopped, position, applied = error, error.position, error.applied
        if applied:
            _advance(row, position, applied)
        if stopped or row.failed_event_id is not None:
            _record_stop(row, stopped)
    if stopped:
        raise stopped
    return applied


def catch_up(projection: Projection, *, limit: int = CHUNK) -> int:
    """Apply up to `limit` new events to an asynchronous projection; return how many.

    Raises ProjectionStopped at an event it cannot apply (see _step).
    """
    return _step(projection, projection.name, projection.live(), limit=limit)


# --- the runner's lock ----------------------------------------------------------------


def lock_key(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def try_lock_runner(name: str) -> bool:
    """Take the session-level lock that makes this process the projection's only runner."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [LOCK_CLASS, lock_key(name)])
        locked: bool = cursor.fetchone()[0]
        return locked


def unlock_runner(name: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [LOCK_CLASS, lock_key(name)])


# --- rebuild ----------------------------------------------------------------------------


def _identifier(name: str) -> sql.Identifier:
    return sql.Identifier(name)


def _execute(statement: str | sql.Composable, params: Params = ()) -> None:
    if isinstance(statement, sql.Composable):
        statement = statement.as_string(connection.connection)
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def shadow_name(table: str) -> str:
    return f"{table}__rebuild"


@dataclass
class Progress:
    """What a rebuild reports after each committed step."""

    done: int = 0
    total: int = 0
    report: Callable[[Progress], None] = field(default=lambda progress: None)


def rebuild(projection: Projection, *, progress: Progress | None = None, restart: bool = False,
            steps: int | None = None, chunk: int = CHUNK) -> bool:  # fmt: skip
    """Rebuild `projection` into shadow tables and swap them in; True when swapped.

    At an event it cannot apply, raises ProjectionStopped, with the events before it kept.
    The rest is `rebuild_together`'s.
    """
    swapped, stops = rebuild_together([projection], progress=progress, restart=restart, steps=steps, chunk=chunk)
    if stops:
        raise stops[0]
    return bool(swapped)


def rebuild_together(chosen: Sequence[Projection], *, progress: Progress | None = None, restart: bool = False,
                     steps: int | None = None,
                     chunk: int = CHUNK) -> tuple[list[Projection], list[ProjectionStopped]]:  # fmt: skip
    """Rebuild the projections into shadow tables, reading the log once for all of them, and swap
    each in; return those swapped and where the others stopped.

    Resumes an interrupted rebuild (its shadow tables and checkpoint survive)
    unless `restart`: each projection goes on from its own checkpoint, and the
    pass reads from the earliest. `steps` stops after that many committed chunks
    without swapping (for operators who want to pace it, and for tests). A
    projection that meets an event it cannot apply keeps the events before it and
    drops out of the pass; the others go on and are swapped in.
    """
    progress = progress or Progress()
    shadows = {projection.name: {table: shadow_name(table) for table in projection.tables} for projection in chosen}
    with transaction.atomic():
        for projection in chosen:
            _prepare_shadow(projection, shadows[projection.name], restart)
        earliest = min(position_of(checkpoint(_rebuild_name(projection))) for projection in chosen)
        progress.total = progress.done + backlog(earliest)[0]
    progress.report(progress)
    going, stops = list(chosen), list[ProjectionStopped]()
    while going:
        if steps is not None:
            if steps == 0:
                return [], stops
            steps -= 1
        read, stopped = _quickly_else_carefully(functools.partial(_step_together, going, shadows, limit=chunk))
        stops += stopped
        going = [projection for projection in going if projection.name not in {stop.projection for stop in stopped}]
        progress.done += read
        progress.report(progress)
        if read < chunk:
            break
    for projection in going:
        for table, copy in shadows[projection.name].items():
            _add_indexes(copy, table)
        _swap(projection, shadows[projection.name], _rebuild_name(projection))
    return going, stops


def _rebuild_name(projection: Projection) -> str:
    return f"{projection.name}__rebuild"


def _prepare_shadow(projection: Projection, shadow: dict[str, str], restart: bool) -> None:
    """Fresh shadow tables and a checkpoint at the start of the log, unless a rebuild left them to resume."""
    name = _rebuild_name(projection)
    if restart or not ProjectionCheckpoint.objects.filter(name=name).exists():
        ProjectionCheckpoint.objects.filter(name=name).delete()
        for table, copy in shadow.items():
            _execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_identifier(copy)))
            _create_copy(copy, table)
        checkpoint(name)


def _step_together(going: list[Projection], shadows: dict[str, dict[str, str]], careful: bool,
                   *, limit: int) -> tuple[int, list[ProjectionStopped]]:  # fmt: skip
    """One committed chunk of a rebuild: up to `limit` events from the earliest of the projections'
    checkpoints, each applied to the projections that have not had it; return how many were read,
    and the stops (each recorded on its checkpoint, with the events before it kept)."""
    with transaction.atomic():
        rows = {projection.name: checkpoint(_rebuild_name(projection), lock=True) for projection in going}
        positions = {name: position_of(row) for name, row in rows.items()}
        applied = dict.fromkeys(rows, 0)
        stops: dict[str, ProjectionStopped] = {}
        read, before = 0, min(positions.values())
        metadata = any(projection.reads_metadata for projection in going)
        with closing(stream_ahead(before, limit=limit, metadata=metadata)) as batches:
            for batch in batches:
                read += len(batch)
                for projection in going:
                    name = projection.name
                    # Mostly every projection is where the batch starts: then every event is new to it.
                    unseen = batch if positions[name] == before else [e for e in batch if e.position > positions[name]]
                    if name in stops or not unseen:
                        continue
                    try:
                        relevant = [event for event in unseen if event.aggregate_type in projection.aggregate_types]
                        if relevant:
                            _apply_batch(projection, relevant, shadows[name], careful=careful)
                    except ProjectionStopped as stopped:
                        kept = next(n for n, event in enumerate(unseen) if event.id == stopped.event_id)
                        stopped.position = unseen[kept - 1].position if kept else positions[name]
                        positions[name], applied[name] = stopped.position, applied[name] + kept
                        stops[name] = stopped
                        continue
                    positions[name], applied[name] = unseen[-1].position, applied[name] + len(unseen)
                before = batch[-1].position
        for name, row in rows.items():
            if applied[name]:
                _advance(row, positions[name], applied[name])
            if name in stops or row.failed_event_id is not None:
                _record_stop(row, stops.get(name))
    return read, list(stops.values())


def _swap(projection: Projection, shadow: dict[str, str], rebuild_checkpoint: str) -> None:
    """One short transaction: lock out writers, apply the last events, rename the tables.

    Inline projections are written by commands: with their tables locked, every
    command still in flight waits, so each committed event is visible here and
    each uncommitted one will write the new table after the swap. Asynchronous
    ones are written only by their runner, which waits on the checkpoint row.
    An event it cannot apply undoes the swap; the stop is recorded on the rebuild's
    checkpoint (which stays where it was), as a step records it.
    """
    try:
        _quickly_else_carefully(functools.partial(_swap_now, projection, shadow, rebuild_checkpoint))
    except ProjectionStopped as stopped:
        with transaction.atomic():
            _record_stop(checkpoint(rebuild_checkpoint, lock=True), stopped)
        raise


def _swap_now(projection: Projection, shadow: dict[str, str], rebuild_checkpoint: str, careful: bool) -> None:
    with transaction.atomic():
        row = checkpoint(rebuild_checkpoint, lock=True)
        live_row = None if projection.inline else checkpoint(projection.name, lock=True)
        for table in projection.tables:
            _execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(_identifier(table)))
        position, applied = _apply_all(projection, shadow, position_of(row), careful=careful,
                                       horizon=not projection.inline)  # fmt: skip
        for table, copy in shadow.items():
            _replace_table(table, copy)
        if live_row is not None:
            ProjectionCheckpoint.objects.filter(name=projection.name).update(
                transaction_id=position.transaction_id, event_id=position.event_id,
                events_applied=row.events_applied + applied, updated_at=timezone.now(),
                failed_event_id=None, failure=None, failed_at=None,  # past any event it had stopped at
            )  # fmt: skip
        ProjectionCheckpoint.objects.filter(name=rebuild_checkpoint).delete()


_INDEX_NAME = re.compile(r"^CREATE (UNIQUE )?INDEX \S+ ON \S+ ")


def _indexes(table: str) -> dict[str, str]:
    """Index name -> definition with the index and table names taken out ("CREATE INDEX USING ...")."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s::regclass",
            [table],
        )
        return {name: _INDEX_NAME.sub(r"CREATE \1INDEX ", definition) for name, definition in cursor.fetchall()}


# The constraints of a table that an index enforces (primary key, unique, exclusion), and
# its unique indexes that enforce none: what a copy's writes need from the start.
_UNIQUE = """
SELECT pg_get_constraintdef(c.oid), pg_get_indexdef(i.indexrelid)
  FROM pg_index i
  LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid AND c.contype IN ('p', 'u', 'x')
 WHERE i.indrelid = %s::regclass AND (i.indisunique OR c.oid IS NOT NULL)
"""


def _create_copy(copy: str, table: str, *, temporary: bool = False) -> None:
    """Create `copy` with `table`'s columns, defaults and constraints, and of its indexes only those
    its writes need: the unique ones, by which ON CONFLICT and the updates find a row. Each other
    index would cost every one of a rebuild's millions of writes; _add_indexes builds them once, at
    the end, over the finished table (a replay to verify against needs none of them)."""
    create = "CREATE TEMP TABLE {} (LIKE {} INCLUDING ALL EXCLUDING INDEXES) ON COMMIT DROP" if temporary else (
        "CREATE TABLE {} (LIKE {} INCLUDING ALL EXCLUDING INDEXES)")  # fmt: skip
    _execute(sql.SQL(create).format(_identifier(copy), _identifier(table)))
    with connection.cursor() as cursor:
        cursor.execute(_UNIQUE, [table])
        unique = cursor.fetchall()
    for constraint, index in unique:
        if constraint is not None:
            _execute(sql.SQL("ALTER TABLE ") + _identifier(copy) + sql.SQL(" ADD " + constraint))
        else:
            _create_index(_INDEX_NAME.sub(r"CREATE \1INDEX ", index), copy)


def _add_indexes(copy: str, table: str) -> None:
    """Give `copy` each index of `table` it lacks (a resumed rebuild may have built some already)."""
    built = set(_indexes(copy).values())
    for definition in _indexes(table).values():
        if definition not in built:
            _create_index(definition, copy)


def _create_index(definition: str, table: str) -> None:
    """Create on `table` the index of `definition`, as _indexes gives it ("CREATE INDEX USING ...")."""
    head, rest = definition.split(" USING ", 1)
    _execute(sql.SQL(head + " ON ") + _identifier(table) + sql.SQL(" USING " + rest))


# Who holds what on a table and on each of its columns (column NULL for the table),
# the owner's own privileges left out; grantee NULL is PUBLIC.
_GRANTS = """
SELECT NULL, CASE WHEN acl.grantee <> 0 THEN pg_get_userbyid(acl.grantee) END, acl.privilege_type, acl.is_grantable
  FROM pg_class c, aclexplode(c.relacl) acl
 WHERE c.oid = %(table)s::regclass AND acl.grantee <> c.relowner
UNION ALL
SELECT a.attname, CASE WHEN acl.grantee <> 0 THEN pg_get_userbyid(acl.grantee) END, acl.privilege_type, acl.is_grantable
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid, aclexplode(a.attacl) acl
 WHERE a.attrelid = %(table)s::regclass AND a.attnum > 0 AND NOT a.attisdropped AND acl.grantee <> c.relowner
"""


# A row of _GRANTS: column (None: the table), grantee (None: PUBLIC), privilege, grantable.
_Grant = tuple[str | None, str | None, str, bool]


def _grants(table: str) -> list[_Grant]:
    with connection.cursor() as cursor:
        cursor.execute(_GRANTS, {"table": table})
        grants: list[_Grant] = cursor.fetchall()
        return grants


def _grantee(name: str | None) -> sql.Composable:
    return sql.Identifier(name) if name is not None else sql.SQL("PUBLIC")


def _copy_grants(table: str, copy: str) -> None:
    """Give `copy` exactly the grants on `table` and its columns.

    CREATE TABLE ... LIKE copies no privileges: without this, the roles the web
    and the runner connect as would lose their access to a rebuilt table.
    """
    for grantee in {grantee for _, grantee, _, _ in _grants(copy)}:  # default privileges, if any
        _execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(_identifier(copy), _grantee(grantee)))
    for column, grantee, privilege, grantable in _grants(table):
        _execute(sql.SQL("GRANT {}{} ON {} TO {}{}").format(
            sql.SQL(privilege),  # a keyword from aclexplode, such as SELECT
            sql.SQL(" ({})").format(_identifier(column)) if column is not None else sql.SQL(""),
            _identifier(copy),
            _grantee(grantee),
            sql.SQL(" WITH GRANT OPTION" if grantable else ""),
        ))  # fmt: skip


def _replace_table(table: str, copy: str) -> None:
    """Drop `table` and give `copy` its name, its grants and its index and constraint names."""
    _copy_grants(table, copy)
    live = {definition: name for name, definition in _indexes(table).items()}
    renames = [(name, live[definition]) for name, definition in _indexes(copy).items() if definition in live]
    _execute(sql.SQL("DROP TABLE {}").format(_identifier(table)))
    _execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(_identifier(copy), _identifier(table)))
    for old, new in renames:
        _execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(_identifier(old), _identifier(new)))


# --- verification -------------------------------------------------------------------------


@dataclass
class Drift:
    table: str
    kind: str  # "missing" (replay has it, the table not), "unexpected" (the reverse)
    row: tuple[Any, ...]


class Findings(list[ProjectionStopped | Drift]):
    """What verify found: every event replay could not apply (ProjectionStopped), then
    examples of the rows that differ (Drift). `total` counts both, every differing row included."""

    total = 0


def verify(projection: Projection, *, limit: int = 100) -> Findings:
    """`verify_together` for one projection."""
    return verify_together([projection], limit=limit)[projection.name]


def verify_together(chosen: Sequence[Projection], *, limit: int = 100) -> dict[str, Findings]:
    """Replay the log, read once, into temporary tables and compare every row with the live tables;
    return each projection's findings, by name.

    Runs in one REPEATABLE READ transaction, so the log and the tables are read
    as of one moment: an inline projection is compared with every event then
    committed, an asynchronous one with the events up to its checkpoint. Replay
    goes on past an event it cannot apply, without the rest of that aggregate's
    events, so that drift elsewhere is still found. At most `limit` differing
    rows per table and kind are returned (0: none), all of them counted.
    """
    return _quickly_else_carefully(functools.partial(_verify, chosen, limit=limit))


def _verify(chosen: Sequence[Projection], careful: bool, *, limit: int) -> dict[str, Findings]:
    found: dict[str, Findings] = {}
    with transaction.atomic():
        _execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        copies = {projection.name: {table: f"verify_{table}" for table in projection.tables} for projection in chosen}
        for table, copy in ((table, copy) for tables in copies.values() for table, copy in tables.items()):
            _create_copy(copy, table, temporary=True)
        until = {
            projection.name: None if projection.inline else position_of(checkpoint(projection.name))
            for projection in chosen
        }
        stops = _replay_together([p for p in chosen if until[p.name] != START], copies, until, careful)
        for projection in chosen:
            findings = found[projection.name] = Findings(stops.get(projection.name, []))
            findings.total = len(findings)
            for table, copy in copies[projection.name].items():
                for kind, (count, rows) in _differing(copy, table, limit).items():
                    findings += [Drift(table, kind, row) for row in rows]
                    findings.total += count
        transaction.set_rollback(True)
    return found


def _differing(replayed: str, table: str, limit: int) -> dict[str, tuple[int, list[tuple[Any, ...]]]]:
    """The rows of `replayed` that `table` lacks or holds otherwise ("missing"), and the reverse
    ("unexpected"): by kind, how many (counted apart, so that showing none still finds them all),
    and at most `limit` of them.

    One full join on the primary key reads both tables once for both counts: two EXCEPTs sorted
    each table twice (44 s against 16 s for ten million daily statements). A row that differs
    only outside its key is both missing (as replay has it) and unexpected (as the table has it).
    """
    columns = _primary_key(table)
    key, first = sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(columns[0])
    tables = {"replayed": _identifier(replayed), "table": _identifier(table), "key": key, "first": first}
    differs = "ROW(r.*) IS DISTINCT FROM ROW(t.*)"
    count = sql.SQL(
        "SELECT count(*) FILTER (WHERE r.{first} IS NOT NULL AND " + differs + "), "
        "count(*) FILTER (WHERE t.{first} IS NOT NULL AND " + differs + ") "
        "FROM {replayed} r FULL JOIN {table} t USING ({key})"
    ).format(**tables)
    with connection.cursor() as cursor:
        cursor.execute(count.as_string(connection.connection))
        counts = dict(zip(("missing", "unexpected"), cursor.fetchone(), strict=True))
        found = {}
        for kind, side in (("missing", "r"), ("unexpected", "t")):
            rows: list[tuple[Any, ...]] = []
            if counts[kind] and limit:
                sample = sql.SQL(
                    "SELECT {side}.* FROM {replayed} r FULL JOIN {table} t USING ({key}) "
                    "WHERE {side}.{first} IS NOT NULL AND " + differs + " LIMIT %s"
                ).format(side=sql.Identifier(side), **tables)
                cursor.execute(sample.as_string(connection.connection), [limit])
                rows = cursor.fetchall()
            found[kind] = (counts[kind], rows)
    return found


def _primary_key(table: str) -> list[str]:
    """The columns of `table`'s primary key, in order; every projection's table has one."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.attname FROM pg_index i, unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) "
            "JOIN pg_attribute a ON a.attnum = k.attnum "
            "WHERE i.indrelid = %s::regclass AND i.indisprimary AND a.attrelid = i.indrelid ORDER BY k.n",
            [table],
        )
        columns = [name for (name,) in cursor.fetchall()]
    if not columns:
        raise ValueError(f"{table} has no primary key, by which verification matches its rows with replay's")
    return columns


def _replay_together(chosen: list[Projection], copies: dict[str, dict[str, str]], until: dict[str, Position | None],
                     careful: bool) -> dict[str, list[ProjectionStopped]]:  # fmt: skip
    """Replay the log once into each projection's copies, each up to its `until` (None: the end);
    return, by projection, the events it could not apply, going on after each without the
    rest of its aggregate's events."""
    stops: dict[str, list[ProjectionStopped]] = {projection.name: [] for projection in chosen}
    if not chosen:
        return stops
    ends = [until[projection.name] for projection in chosen]
    last = None if None in ends else max(end for end in ends if end is not None)
    with connection.cursor() as cursor:  # the reader sees the log exactly as this transaction does
        cursor.execute("SELECT pg_export_snapshot()")
        snapshot = cursor.fetchone()[0]
    metadata = any(projection.reads_metadata for projection in chosen)
    with closing(stream_ahead(START, horizon=False, until=last, metadata=metadata, snapshot=snapshot)) as batches:
        for batch in batches:
            for projection in chosen:
                end, skip = until[projection.name], {stop.aggregate_id for stop in stops[projection.name]}
                events = [
                    event for event in batch
                    if event.aggregate_type in projection.aggregate_types and (end is None or event.position <= end)
                ]  # fmt: skip
                while events:
                    try:
                        _apply_batch(projection, [event for event in events if event.aggregate_id not in skip],
                                     copies[projection.name], careful=careful)  # fmt: skip
                        break
                    except ProjectionStopped as stopped:
                        stops[projection.name].append(stopped)
                        skip.add(stopped.aggregate_id)
                        events = events[1 + next(n for n, e in enumerate(events) if e.id == stopped.event_id) :]
    return stops
