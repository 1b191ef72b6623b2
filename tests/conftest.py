import json
import threading
from contextlib import contextmanager
import uuid

import psycopg
import pytest
from django.db import connection, connections

from eventstore.store import EventStore, NewEvent


@pytest.fixture
def store():
    return EventStore()


@pytest.fixture
def raw_connect():
    """Open plain psycopg connections to the test database, closed after the test."""
    opened = []

    def connect(**kwargs):
        params = connection.get_connection_params()
        conninfo = {k: params[k] for k in ("dbname", "user", "password", "host", "port") if params.get(k)}
        conn = psycopg.connect(**conninfo, **kwargs)
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        conn.close()


class RoundTrips:
    """Counts the messages that each cost a round trip to the server (Query, Sync)."""

    def __init__(self, path):
        self.path = path

    @property
    def messages(self):
        lines = self.path.read_text().splitlines()
        return [line.split("\t", 4)[3:] for line in lines if "\tF\t" in line]

    @property
    def count(self):
        return sum(1 for message in self.messages if message[0] in ("Query", "Sync"))

    def sent(self, text):
        return any(text in " ".join(message) for message in self.messages)


@pytest.fixture
def round_trips(tmp_path):
    """Trace what the Django connection sends to PostgreSQL inside the block."""

    @contextmanager
    def trace():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")  # so a lazily started transaction's BEGIN is not counted
        path = tmp_path / "libpq-trace.txt"
        with path.open("w") as file:
            connection.connection.pgconn.trace(file.fileno())
            try:
                yield RoundTrips(path)
            finally:
                connection.connection.pgconn.untrace()

    return trace


def run_threads(target, count):
    """Run target(index) in `count` threads at once; re-raise the first failure.

    Each thread closes its own Django connection, so the test database can be dropped.
    """
    errors = []

    def body(index):
        try:
            target(index)
        except BaseException as error:  # reported to the test below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    if errors:
        raise errors[0]


def new_events(*types, **data):
    return [NewEvent(event_type, dict(data)) for event_type in types]


def new_id():
    return uuid.uuid4()


def database_url() -> str:
    """A DATABASE_URL for the test database, for management commands run as subprocesses."""
    from urllib.parse import quote

    params = connection.get_connection_params()
    user, name = quote(params.get("user", "")), params["dbname"]
    password = f":{quote(params['password'])}" if params.get("password") else ""
    host, port = params.get("host", ""), params.get("port") or 5432
    if host.startswith("/"):
        return f"postgresql://{user}{password}@/{name}?host={quote(host)}&port={port}"
    return f"postgresql://{user}{password}@{host}:{port}/{name}"


def manage(*args, **popen):
    """Start `manage.py ARGS` against the test database; returns the Popen."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "DATABASE_URL": database_url(), "PYTHONUNBUFFERED": "1"}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    root = Path(__file__).resolve().parents[1]
    return subprocess.Popen(
        [sys.executable, "manage.py", *args], cwd=root, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **popen,
    )  # fmt: skip


def pytest_terminal_summary(terminalreporter):
    """Say how many hostile inputs the fuzz tests tried (tests/test_fuzz.py)."""
    from tests import test_fuzz

    if test_fuzz.CASES:
        total = sum(test_fuzz.CASES.values())
        terminalreporter.write_line(f"fuzzed input: {total} cases, " + ", ".join(f"{k} {v}" for k, v in sorted(test_fuzz.CASES.items())))


def without_trigger(trigger, statement, params=()):
    """Run one statement with one guard trigger off, as only the table's owner can (tests' repairs)."""
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE events DISABLE TRIGGER {trigger}")
        try:
            cursor.execute(statement, params)
            return cursor.fetchone() if cursor.description else None
        finally:
            cursor.execute(f"ALTER TABLE events ENABLE TRIGGER {trigger}")


@pytest.fixture
def tamper():
    """Insert an event straight into the log, as anyone holding the application's role could.

    Django never empties the log between tests, so the tampered accounts' events go afterwards.
    """
    touched = set()

    def insert(account_id, event_type, data, *, version=None, created_at=None):
        touched.add(account_id)
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO events (aggregate_id, aggregate_type, event_type, event_data, version, created_at) "
                "VALUES (%s, 'BankAccount', %s, %s::jsonb, "
                "        COALESCE(%s, (SELECT max(version) + 1 FROM events WHERE aggregate_id = %s)), "
                "        COALESCE(%s, now())) RETURNING id",
                [account_id, event_type, json.dumps(data), version, account_id, created_at],
            )
            return cursor.fetchone()[0]

    yield insert
    if touched:
        without_trigger("events_no_delete", "DELETE FROM events WHERE aggregate_id = ANY(%s)", [list(touched)])
