"""Hot-path SQL on Django's own connection: prepared, pipelined, and batched.

Django binds parameters client-side, so PostgreSQL re-parses and re-plans every
statement. The few statements every command runs (lock, load, append, read
model, command log) go through here instead: a server-side-binding cursor on the
same connection (so in the same transaction) that psycopg keeps prepared.

To spend fewer round trips, `deferred()` holds back writes whose result nobody
reads (`write`) and sends them as data-modifying CTEs of the next statement that
returns rows, or of the last write: a command's writes become one statement.
Statements combined this way share one snapshot, so they must not read each
other's rows: appends to different aggregates, read models, logs.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from typing import Any, Sequence

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections

_held: contextvars.ContextVar[list | None] = contextvars.ContextVar("deferred_writes", default=None)


def _run(sql: str, params, fetch: str | None):
    django_connection = connections[DEFAULT_DB_ALIAS]
    django_connection.ensure_connection()
    with django_connection.wrap_database_errors, psycopg.Cursor(django_connection.connection) as cursor:
        cursor.execute(sql, params)
        if fetch == "all":
            return cursor.fetchall()
        if fetch == "one":
            return cursor.fetchone()
        return None


def _with_held(sql: str, params) -> tuple[str, Any]:
    """Prefix `sql` with the held writes as CTEs (positional parameters only)."""
    held = _held.get()
    if not held or isinstance(params, dict):
        if held:
            _flush(held)
        return sql, params
    ctes = ", ".join(f"held_{n} AS ({statement})" for n, (statement, _) in enumerate(held))
    combined = [value for _, values in held for value in values] + list(params)
    held.clear()
    body = sql.lstrip()
    if body[:5].upper() == "WITH ":
        return f"WITH {ctes}, {body[5:]}", combined
    return f"WITH {ctes} {body}", combined


def _flush(held: list) -> None:
    if held:
        last_sql, last_params = held.pop()
        _run(*_with_held(last_sql, last_params), fetch=None)


def write(sql: str, params: Sequence[Any] = ()) -> None:
    """A data-modifying statement whose result is not needed: held back inside deferred()."""
    held = _held.get()
    if held is None:
        _run(sql, params, fetch=None)
    else:
        held.append((sql, list(params)))


def fetchall(sql: str, params: Sequence[Any] | dict = ()) -> list[tuple]:
    return _run(*_with_held(sql, params), fetch="all")


def fetchone(sql: str, params: Sequence[Any] | dict = ()) -> tuple | None:
    return _run(*_with_held(sql, params), fetch="one")


@contextmanager
def deferred():
    """Hold back `write`s and send them with the next fetch, or together at the end of the block."""
    held: list = []
    token = _held.set(held)
    try:
        yield
        _flush(held)
    finally:
        _held.reset(token)


def conninfo() -> dict:
    """libpq parameters of Django's database, for connections of our own (LISTEN, workers)."""
    params = connections[DEFAULT_DB_ALIAS].get_connection_params()
    return {key: params[key] for key in ("dbname", "user", "password", "host", "port") if params.get(key)}
