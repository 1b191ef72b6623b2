"""Which connection the store's SQL runs on, and how a command's statements reach it.

Where a query goes is decided here and nowhere else. Commands, projections and
operations run on the primary (`PRIMARY`). The pages' reads of the bank's data, by
the ORM and by the store's read helpers alike, go where `reads()` says: the
database a request chose with `read_from` (a streaming replica, see
eventstore.replicas), the primary otherwise. One request reads from one database,
so an account page never shows a primary balance beside a replica's history.

The statements go through a server-side-binding cursor on Django's own connection
(so in Django's transaction), which psycopg keeps prepared: Django binds on the
client, so PostgreSQL would re-parse and re-plan every hot statement.

A command runs in pipeline mode (`command_transaction`): BEGIN goes out with its
first read, and its writes go out with COMMIT, so a command costs two round trips
however much it writes. Its writes are held back and sent as one statement (each
but the last as a data-modifying CTE: psycopg's cost is per statement), which is
sent before any read, so a read sees every write before it. Statements combined
this way share one snapshot, so they must not read each other's rows: appends to
different aggregates, read models, logs. A write's error (a lost race, a
duplicate idempotency key) surfaces when the transaction commits, as a Django
DatabaseError like any other.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model
from psycopg.types.datetime import TimestamptzLoader

PRIMARY = DEFAULT_DB_ALIAS
# SQLSTATEs the web, the commands and the replicas tell apart: a lock waited on past lock_timeout,
# a statement cancelled (by statement_timeout, or by hand), a unique key already taken.
LOCK_NOT_AVAILABLE, QUERY_CANCELED, UNIQUE_VIOLATION = "55P03", "57014", "23505"
# The apps whose tables a replica may serve. Staff logins, sessions and the admin's own records
# stay on the primary: a login must never wait for a replica to replay it.
BANK_APPS = frozenset({"accounts", "eventstore"})

Params = Sequence[Any] | dict[str, Any]

_reads: contextvars.ContextVar[str] = contextvars.ContextVar("reads", default=PRIMARY)


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a database error as Django raises it (psycopg's error is its cause)."""
    return getattr(error.__cause__, "sqlstate", None)


def read_from(alias: str) -> contextvars.Token[str]:
    """From now on in this context, read the bank's data from `alias`; reset with the token."""
    return _reads.set(alias)


@contextmanager
def reading_from(alias: str) -> Iterator[None]:
    token = _reads.set(alias)
    try:
        yield
    finally:
        _reads.reset(token)


def reads() -> str:
    """The database the pages read the bank's data from: the one chosen for this request, or the primary."""
    return _reads.get()


class Router:
    """Django's database router: the bank's reads where `reads()` says, everything else on the primary."""

    def db_for_read(self, model: type[Model], **hints: Any) -> str:
        return _reads.get() if model._meta.app_label in BANK_APPS else PRIMARY

    def db_for_write(self, model: type[Model], **hints: Any) -> str:
        return PRIMARY

    def allow_relation(self, first: Any, second: Any, **hints: Any) -> bool:
        return True  # a replica holds the primary's rows: an object read there may refer to one read here

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return db == PRIMARY  # a replica replays the primary's schema


def wrapper(alias: str = PRIMARY) -> BaseDatabaseWrapper:
    """Django's connection `alias`, connected."""
    django_connection = connections[alias]
    django_connection.ensure_connection()
    return django_connection


class _Command:
    """The command in progress on this connection: its one cursor, and the writes it holds back."""

    def __init__(self, cursor: psycopg.Cursor[Any]) -> None:
        self.cursor = cursor
        self.held: list[tuple[str, list[Any]]] = []
        self.wrote = False  # whether writes went out before the end (a read inside the command flushed them)


_command: contextvars.ContextVar[_Command | None] = contextvars.ContextVar("command", default=None)


def _run(sql: str, params: Params, fetch: str | None, alias: str) -> Any:
    command = _command.get() if alias == PRIMARY else None
    if command is not None:  # psycopg makes a cursor dearly: a command sends everything through one
        command.cursor.execute(sql, params)
        return command.cursor.fetchall() if fetch == "all" else command.cursor.fetchone() if fetch else None
    django_connection = wrapper(alias)
    with django_connection.wrap_database_errors, cursor_on(django_connection.connection) as cursor:
        cursor.execute(sql, params)
        if fetch == "all":
            return cursor.fetchall()
        if fetch == "one":
            return cursor.fetchone()
        return None


def cursor_on(connection: psycopg.Connection[Any]) -> psycopg.Cursor[Any]:
    """A server-side-binding cursor on `connection`, reading timestamps with psycopg's own C loader
    (Django's wraps it in Python, a cost per row that a load of a long history notices)."""
    cursor = psycopg.Cursor(connection)
    cursor.adapters.register_loader("timestamptz", TimestamptzLoader)
    return cursor


def write(sql: str, params: Sequence[Any] = ()) -> None:
    """A data-modifying statement on the primary, whose result nobody reads; inside a command, held back."""
    command = _command.get()
    if command is None:
        _run(sql, params, None, PRIMARY)
    else:
        command.held.append((sql, list(params)))


def _flush() -> None:
    """Send the held writes as one statement: all but the last as CTEs of the last."""
    command = _command.get()
    if command is None or not command.held:
        return
    *before, (sql, params) = command.held
    command.held.clear()
    command.wrote = True
    if before:
        ctes = ", ".join(f"held_{n} AS ({statement})" for n, (statement, _) in enumerate(before))
        sql, params = f"WITH {ctes} {sql}", [value for _, values in before for value in values] + params
    _run(sql, params, None, PRIMARY)


def fetchall(sql: str, params: Params = (), *, alias: str = PRIMARY) -> list[tuple[Any, ...]]:
    _flush()
    result: list[tuple[Any, ...]] = _run(sql, params, "all", alias)
    return result


def fetch_each(statements: Sequence[tuple[str, Params]], *, alias: str = PRIMARY) -> list[list[tuple[Any, ...]]]:
    """The rows of each statement, in order; inside a command all are sent before the first is read (one wait)."""
    if len(statements) == 1:
        return [fetchall(*statements[0], alias=alias)]
    _flush()
    django_connection = wrapper(alias)
    with django_connection.wrap_database_errors:
        cursors = [cursor_on(django_connection.connection) for _ in statements]
        try:
            for cursor, (sql, params) in zip(cursors, statements, strict=True):
                cursor.execute(sql, params)
            return [cursor.fetchall() for cursor in cursors]
        finally:
            for cursor in cursors:
                cursor.close()


def fetchone(sql: str, params: Params = (), *, alias: str = PRIMARY) -> tuple[Any, ...] | None:
    _flush()
    result: tuple[Any, ...] | None = _run(sql, params, "one", alias)
    return result


def clock() -> datetime:
    """The database's clock (not the transaction's start): what events are dated by."""
    row = fetchone("SELECT clock_timestamp()")
    assert row is not None
    moment: datetime = row[0]
    return moment


_INERROR = psycopg.pq.TransactionStatus.INERROR
_ABORTED = psycopg.pq.PipelineStatus.ABORTED
# Inside a test's transaction a command is a savepoint; otherwise the pipeline's
# implicit transaction: every statement up to the Sync that ends the pipeline.
_SAVEPOINT, _RELEASE = "SAVEPOINT command_unit", "RELEASE SAVEPOINT command_unit"
_UNDO = {True: ("ROLLBACK TO SAVEPOINT command_unit", _RELEASE), False: ("ROLLBACK",)}


@contextmanager
def command_transaction() -> Iterator[None]:
    """One durable transaction on the primary, in two round trips: the loads, then the writes.

    In pipeline mode, the statements a client sends up to a Sync are one implicit
    transaction: the loads go out (and are read) with a Flush, the writes with the
    Sync that ends the pipeline and commits them all, or none. So no BEGIN or
    COMMIT goes out, and the writer locks the loads took last to that Sync. Django's
    atomic and psycopg's transaction block would each add round trips.

    Durable, as Django's atomic(durable=True) is: a command run inside someone
    else's transaction could not commit what it promises, so it refuses at once
    (a test's own transaction aside: there the command is a savepoint).
    """
    django_connection = wrapper(PRIMARY)
    nested = django_connection.in_atomic_block
    if nested and not getattr(django_connection.atomic_blocks[-1], "_from_testcase", False):
        raise RuntimeError("A durable atomic block cannot be nested within another atomic block.")
    raw = django_connection.connection
    with django_connection.wrap_database_errors:
        try:
            with raw.pipeline(), cursor_on(raw) as cursor:
                if nested:
                    cursor.execute(_SAVEPOINT)
                command = _Command(cursor)
                token = _command.set(command)
                try:
                    yield
                    _flush()
                except BaseException:
                    # Undone before the Sync, which would commit what was sent. Reads and locks
                    # alone commit harmlessly, and ROLLBACK outside a block is a WARNING in the server's log.
                    if raw.pgconn.pipeline_status != _ABORTED and (nested or command.wrote):
                        for statement in _UNDO[nested]:
                            cursor.execute(statement)
                    raise
                finally:
                    _command.reset(token)
                if nested:
                    cursor.execute(_RELEASE)
        except BaseException:
            # A statement failed: the server undid the implicit transaction, but not a savepoint.
            if nested and raw.info.transaction_status == _INERROR:
                for statement in _UNDO[True]:
                    raw.execute(statement)
            raise


def conninfo() -> dict[str, Any]:
    """libpq parameters of the primary, for connections of our own (LISTEN, workers)."""
    params = connections[PRIMARY].get_connection_params()
    return {key: params[key] for key in ("dbname", "user", "password", "host", "port") if params.get(key)}
