"""Which connection the store's SQL runs on, and how a command's statements reach it.

Where a query goes is decided here and nowhere else. Commands, projections and
operations run on the primary (`PRIMARY`); the pages' reads of the log go where
`reads()` says, which asks Django's router, as the ORM does for models. Today
`Router` sends everything to the primary; replicas later change this module only.

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
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

PRIMARY = DEFAULT_DB_ALIAS

Params = Sequence[Any] | dict[str, Any]


class Router:
    """Django's database router: every read and write on the primary, until replicas exist."""

    def db_for_read(self, model: type | None, **hints: Any) -> str:
        return PRIMARY

    def db_for_write(self, model: type | None, **hints: Any) -> str:
        return PRIMARY


def reads() -> str:
    """The database the pages read the log from (the router's choice, as for the ORM's reads)."""
    from eventstore.models import Event

    return router.db_for_read(Event)


def wrapper(alias: str = PRIMARY) -> BaseDatabaseWrapper:
    """Django's connection `alias`, connected."""
    django_connection = connections[alias]
    django_connection.ensure_connection()
    return django_connection


def _run(sql: str, params: Params, fetch: str | None, alias: str) -> Any:
    django_connection = wrapper(alias)
    with django_connection.wrap_database_errors, psycopg.Cursor(django_connection.connection) as cursor:
        cursor.execute(sql, params)
        if fetch == "all":
            return cursor.fetchall()
        if fetch == "one":
            return cursor.fetchone()
        return None


_held: contextvars.ContextVar[list[tuple[str, list[Any]]] | None] = contextvars.ContextVar("held_writes", default=None)


def write(sql: str, params: Sequence[Any] = ()) -> None:
    """A data-modifying statement on the primary, whose result nobody reads; inside a command, held back."""
    held = _held.get()
    if held is None:
        _run(sql, params, None, PRIMARY)
    else:
        held.append((sql, list(params)))


def _flush() -> None:
    """Send the held writes as one statement: all but the last as CTEs of the last."""
    held = _held.get()
    if not held:
        return
    *before, (sql, params) = held
    held.clear()
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
    _flush()
    django_connection = wrapper(alias)
    with django_connection.wrap_database_errors:
        cursors = [psycopg.Cursor(django_connection.connection) for _ in statements]
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


_IDLE, _INTRANS, _INERROR = (psycopg.pq.TransactionStatus[name] for name in ("IDLE", "INTRANS", "INERROR"))
# A command's own transaction, or a savepoint inside a test's.
_OUTERMOST = ("BEGIN", "COMMIT", "ROLLBACK")
_NESTED = ("SAVEPOINT command_unit", "RELEASE SAVEPOINT command_unit", "ROLLBACK TO SAVEPOINT command_unit")


@contextmanager
def command_transaction() -> Iterator[None]:
    """One durable transaction on the primary, pipelined: BEGIN with the first read, the writes with COMMIT.

    Durable, as Django's atomic(durable=True) is: a command run inside someone
    else's transaction could not commit what it promises, so it refuses at once.
    The transaction block is written out here because psycopg's own waits for
    the server at BEGIN and again before COMMIT when pipelined: two round trips more.
    """
    with transaction.atomic(using=PRIMARY, durable=True):
        django_connection = wrapper(PRIMARY)
        raw = django_connection.connection
        outermost = raw.info.transaction_status == _IDLE
        begin, commit, rollback = _OUTERMOST if outermost else _NESTED
        if outermost:
            raw.autocommit = True  # Django's atomic would begin with the first query, and psycopg then waits
        try:
            with django_connection.wrap_database_errors:
                try:
                    with raw.pipeline():
                        raw.execute(begin)
                        token = _held.set([])
                        try:
                            yield
                            _flush()
                        finally:
                            _held.reset(token)
                        raw.execute(commit)
                except BaseException:
                    if raw.info.transaction_status in (_INTRANS, _INERROR):
                        raw.execute(rollback)
                    raise
        finally:
            if outermost and raw.info.transaction_status == _IDLE:
                raw.autocommit = False  # as Django's atomic set it, for its own exit


def conninfo() -> dict[str, Any]:
    """libpq parameters of the primary, for connections of our own (LISTEN, workers)."""
    params = connections[PRIMARY].get_connection_params()
    return {key: params[key] for key in ("dbname", "user", "password", "host", "port") if params.get(key)}
