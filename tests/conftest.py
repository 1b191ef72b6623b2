"""Fixtures and hooks for every test; the helpers they share with tests live in tests/support.py."""

import io
import uuid
from contextlib import contextmanager

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection

from eventstore.store import EventStore
from tests.support import FUZZ_CASES, RoundTrips, insert_event, without_trigger


@pytest.fixture(autouse=True)
def _empty_log_after_a_transactional_test(request, django_db_blocker):
    """Django empties every table it manages after a test that commits, but not the events table
    (unmanaged, and its guard refuses TRUNCATE): empty it too, as the owner would, so that no test
    meets another's committed events (whose command-log rows Django has already removed)."""
    yield
    marker = request.node.get_closest_marker("django_db")
    committed = marker is not None and (marker.kwargs.get("transaction") or marker.args[:1] == (True,))
    if committed or "live_server" in request.fixturenames:
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute("ALTER TABLE events DISABLE TRIGGER events_no_truncate")
            try:
                cursor.execute("TRUNCATE events")
            finally:
                cursor.execute("ALTER TABLE events ENABLE TRIGGER events_no_truncate")


@pytest.fixture
def roles():
    """An application role and a runner role (LOGIN, no password), granted by the owner, for a
    transactional test; dropped after it."""
    suffix = uuid.uuid4().hex[:8]
    app, runner = f"bank_app_test_{suffix}", f"bank_runner_test_{suffix}"
    call_command("grant_app_role", app, "--create", stdout=io.StringIO())
    call_command("grant_app_role", runner, "--runner", "--create", stdout=io.StringIO())
    yield app, runner
    with connection.cursor() as cursor:
        cursor.execute("RESET ROLE")
        for role in (app, runner):
            cursor.execute(f"DROP OWNED BY {role}")  # its grants in this database
            cursor.execute(f"DROP ROLE {role}")


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


@pytest.fixture
def tamper():
    """Insert an event straight into the log past the services' rules, signed as the application
    signs (a malformed or rule-breaking row of its own): tamper(account_id, event_type, data,
    **options) takes support.insert_event's options (signed=False: a row without the keys).

    Django never empties the log between tests, so the tampered accounts' events go afterwards.
    """
    touched = set()

    def insert(account_id, event_type, data, **options):
        touched.add(account_id)
        return insert_event(account_id, event_type, data, **options)

    yield insert
    if touched:
        without_trigger("events_no_delete", "DELETE FROM events WHERE aggregate_id = ANY(%s)", [list(touched)])


def pytest_configure(config):
    """Staff made by the factories get a fast password hash, as Django advises for tests: the
    real one costs a third of a second of CPU per user and per login, most of the suite's time.
    A member of staff who logs in to a server started as production would (make serve) is
    given the real hash (tests.support.production_password)."""
    from django.conf import settings

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *settings.PASSWORD_HASHERS]


def pytest_terminal_summary(terminalreporter):
    """Say how many hostile inputs the fuzz tests tried (tests/test_fuzz.py)."""
    if FUZZ_CASES:
        total = sum(FUZZ_CASES.values())
        terminalreporter.write_line(
            f"fuzzed input: {total} cases, " + ", ".join(f"{k} {v}" for k, v in sorted(FUZZ_CASES.items()))
        )
