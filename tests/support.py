"""Helpers the tests share that are not fixtures: import them from here, never from a
conftest or another test module (conftest.py keeps the fixtures, which may call these)."""

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from django.contrib.auth.hashers import make_password
from django.db import connection as default_connection
from django.db import connections

from eventstore import signing, snapshots, store
from eventstore.store import NewEvent
from tests.factories import PASSWORD

ROOT = Path(__file__).resolve().parents[1]

# How many cases each fuzz test tried; tests/test_fuzz.py counts, the summary hook prints.
FUZZ_CASES = Counter()


# --- the event store --------------------------------------------------------------------


def new_id():
    return uuid.uuid4()


def new_events(*types, **data):
    """One NewEvent per type, each with the same payload."""
    return [NewEvent(event_type, dict(data)) for event_type in types]


def insert_event(aggregate_id, event_type, data, *, version=None, aggregate_type="BankAccount", metadata=None,
                 created_at=None, connection=None, signed=True) -> int:  # fmt: skip
    """Write one row into `events` by SQL, past the services and their rules, and return its id.

    For planting what the services never write: an unreadable or rule-breaking event, an old
    one, or one from a writer that bypassed the account's lock. The guard triggers still
    judge the row. `version` defaults to the aggregate's next; `created_at` to the database's
    clock (so, like a command's events, never before the version it follows); `metadata` to
    NULL. `signed` signs it with the application's key onto the chain as stored (a row the
    application wrote, past its rules); unsigned, it is what someone holding the database role
    but not the keys could write. `connection` is Django's default one unless a psycopg
    connection is given (another session: one that holds a lock, or races a command).
    """
    aggregate_id = uuid.UUID(str(aggregate_id))
    with (connection or default_connection).cursor() as cursor:
        cursor.execute(
            "SELECT COALESCE(max(version), 0) + 1, clock_timestamp() FROM events WHERE aggregate_id = %s",
            [aggregate_id],
        )
        next_version, clock = cursor.fetchone()
        version = next_version if version is None else version
        created_at = clock if created_at is None else created_at
        signature = (None, None, None)
        if signed:
            cursor.execute("SELECT chain_hash FROM events WHERE aggregate_id = %s AND version = %s",
                           [aggregate_id, version - 1])  # fmt: skip
            previous = (cursor.fetchone() or [signing.GENESIS])[0] or store.chain_head(aggregate_id, version - 1)
            signature = signing.sign_event(signing.keys(), previous, aggregate_id, aggregate_type, version,
                                           event_type, data, metadata, created_at)  # fmt: skip
    with (connection or default_connection).cursor() as cursor:
        cursor.execute(
            "INSERT INTO events (aggregate_id, aggregate_type, event_type, event_data, metadata, version, created_at, "
            "                    chain_hash, key_id, mac) "
            "VALUES (%s, %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s, %s, %s) RETURNING id",
            [aggregate_id, aggregate_type, event_type, json.dumps(data),
             None if metadata is None else json.dumps(metadata), version, created_at, *signature],
        )  # fmt: skip
        return cursor.fetchone()[0]


def resign(aggregate_id):
    """Sign the aggregate's history and snapshot again as they now stand, as someone holding both the
    owner's role and the signing keys could (a test's repair after changing rows by hand)."""
    keys, chain, heads = signing.keys(), signing.GENESIS, {}
    with default_connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, aggregate_type, version, event_type, event_data::text, metadata::text, created_at "
            "FROM events WHERE aggregate_id = %s ORDER BY version",
            [aggregate_id],
        )
        for event_id, aggregate_type, version, event_type, data, metadata, created_at in cursor.fetchall():
            metadata = None if metadata is None else json.loads(metadata)
            chain, key_id, mac = signing.sign_event(keys, chain, aggregate_id, aggregate_type, version, event_type,
                                                    json.loads(data), metadata, created_at)  # fmt: skip
            heads[version] = chain
            without_trigger(
                "events_no_update", "UPDATE events SET chain_hash = %s, key_id = %s, mac = %s WHERE id = %s",
                [chain, key_id, mac, event_id],
            )  # fmt: skip
        cursor.execute("SELECT version, schema_version, state::text FROM snapshots WHERE aggregate_id = %s",
                       [aggregate_id])  # fmt: skip
        for version, schema, state in cursor.fetchall():
            content = signing.snapshot_content(aggregate_id, version, schema, json.loads(state), heads[version])
            key_id, mac = keys.sign(signing.SNAPSHOT, content)
            cursor.execute(
                "UPDATE snapshots SET chain_hash = %s, key_id = %s, mac = %s WHERE aggregate_id = %s AND version = %s",
                [heads[version], key_id, mac, aggregate_id, version],
            )
    snapshots.recent.forget(uuid.UUID(str(aggregate_id)))


def without_trigger(trigger, statement, params=()):
    """Run one statement with one guard trigger off, as only the table's owner can (tests' repairs)."""
    with default_connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE events DISABLE TRIGGER {trigger}")
        try:
            cursor.execute(statement, params)
            return cursor.fetchone() if cursor.description else None
        finally:
            cursor.execute(f"ALTER TABLE events ENABLE TRIGGER {trigger}")


def settle(timeout=60):
    """Wait until runners may read every committed event.

    Runners read only transactions older than every running one, on the whole
    server: other test runs sharing it can hold them back for a moment.
    """
    deadline = time.monotonic() + timeout
    with default_connection.cursor() as cursor:
        while True:
            cursor.execute(
                "SELECT NOT EXISTS (SELECT FROM events WHERE transaction_id >= pg_snapshot_xmin(pg_current_snapshot()))"
            )
            if cursor.fetchone()[0]:
                return
            assert time.monotonic() < deadline, "a transaction on the server held the runners back"
            time.sleep(0.05)


def caught_up(projection):
    """Apply every committed event to an asynchronous projection, as its runner would."""
    from eventstore import projections

    settle()
    while projections.catch_up(projection):
        pass


class RoundTrips:
    """Counts the messages that each cost a round trip to the server (Query, Sync) in a libpq trace."""

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


# --- threads and processes ----------------------------------------------------------------


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


def database_url() -> str:
    """A DATABASE_URL for the test database, for management commands run as subprocesses."""
    params = default_connection.get_connection_params()
    user, name = quote(params.get("user", "")), params["dbname"]
    password = f":{quote(params['password'])}" if params.get("password") else ""
    host, port = params.get("host", ""), params.get("port") or 5432
    if host.startswith("/"):
        return f"postgresql://{user}{password}@/{name}?host={quote(host)}&port={port}"
    return f"postgresql://{user}{password}@{host}:{port}/{name}"


def manage(*args, **popen):
    """Start `manage.py ARGS` against the test database; returns the Popen."""
    # Its log lines as production writes them, one JSON object each (config/logs.py).
    env = {**os.environ, "DATABASE_URL": database_url(), "PYTHONUNBUFFERED": "1", "LOG_FORMAT": "json"}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return subprocess.Popen(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **popen,
    )  # fmt: skip


def wait_for(process, text, timeout=60):
    """Read the subprocess's output until a line contains `text`; return the lines read."""
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"{text!r} never appeared in: {''.join(lines)}")


# --- the browser ----------------------------------------------------------------------------

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Root in a container needs --no-sandbox; the machine's closed network needs the
# background services off, or Chromium keeps trying to reach Google.
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@contextmanager
def chromium(monkeypatch, *, back_forward_cache: bool = False):
    """Debian's Chromium, driven by Playwright (skipped, or failed under REQUIRE_BROWSER, without it).

    Playwright turns Chromium's back-forward cache off; `back_forward_cache` keeps it on.
    """
    if not shutil.which(CHROMIUM):
        if os.environ.get("REQUIRE_BROWSER"):
            pytest.fail(f"REQUIRE_BROWSER is set but there is no Chromium at {CHROMIUM}")
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's chromium package (as .ci/run does)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread; the test's
    # own ORM calls (set-up and checks) are still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_FLAGS,
            ignore_default_args=["--disable-back-forward-cache"] if back_forward_cache else None,
        )  # fmt: skip
        yield browser
        browser.close()


@contextmanager
def page_on(browser, live_server):
    """A page of its own (its own cookies, so nobody is logged in) on the live test server."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        yield page
    finally:
        context.close()
        # ORM calls made while the loop ran opened connections of their own context.
        connections.close_all()


WIDTHS = (390, 1024, 1366, 1920)  # a phone, a laptop, a desk, a wide screen


def at_every_width(page, shot, name, check=None):
    """The page as it stands, resized to each width (no second request): a screenshot of each, no
    sideways scrolling at any, and `check(width)` for anything more."""
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        shot(page, f"{name}-{width}")
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert wide <= width, f"{name} at {width} px is {wide} px wide"
        if check:
            check(width)
    page.set_viewport_size({"width": 1366, "height": 900})


def log_in(page, username):
    """Log a UserFactory member of staff in through the login page."""
    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Dashboard')")


# --- make serve -----------------------------------------------------------------------------


def production_password(user):
    """Give `user` PASSWORD hashed as production hashes it (the tests' fast hash is not known there)."""
    user.password = make_password(PASSWORD, hasher="pbkdf2_sha256")
    user.save(update_fields=["password"])
    return user


class Served:
    """`make serve` in a process group of its own, its log lines (standard error) collected as they come."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = int(env["BIND"].rpartition(":")[2])
        self.process = subprocess.Popen(
            ["make", "--no-print-directory", "serve"], cwd=ROOT, env=env, text=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def logged(self) -> list[dict]:
        """The lines that are JSON objects (make's own lines are not)."""
        found = []
        for line in list(self.lines):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return found

    def stop(self) -> int:
        """SIGTERM to serve, as a supervisor sends it to the process it started; make's status."""
        try:
            with open(f"/proc/{self.process.pid}/task/{self.process.pid}/children") as children:
                (serve,) = map(int, children.read().split())  # make runs a one-command recipe without a shell
            os.kill(serve, signal.SIGTERM)
            status = self.process.wait(timeout=90)
        except BaseException:
            os.killpg(self.process.pid, signal.SIGKILL)  # leave nothing running behind a failed test
            raise
        self.reader.join(timeout=10)
        return status


class Proxy:
    """What the TLS proxy passes on: the staff's requests, marked as having come over HTTPS.
    It keeps the cookies itself: they are Secure, and the hop to gunicorn is plain HTTP."""

    def __init__(self, port: int) -> None:
        self.port, self.cookies = port, {}

    def request(self, method: str, path: str, form: dict | None = None, *, https: bool = True):
        headers = {"Host": "127.0.0.1", "Accept": "text/html"}
        if https:
            headers["X-Forwarded-Proto"] = "https"
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        body = None
        if form is not None:
            form = form | {"csrfmiddlewaretoken": self.cookies.get("csrftoken", "")}
            body = urlencode(form)
            headers |= {"Content-Type": "application/x-www-form-urlencoded", "Origin": "https://127.0.0.1"}
        client = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            client.request(method, path, body, headers)
            response = client.getresponse()
            for header in response.headers.get_all("Set-Cookie") or []:
                self.cookies |= {name: morsel.value for name, morsel in SimpleCookie(header).items()}
            return response, response.read().decode()
        finally:
            client.close()


def wait_until_healthy(proxy: Proxy, served: Served, timeout: float = 90) -> dict:
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        assert served.process.poll() is None, "".join(served.lines)
        try:
            response, body = proxy.request("GET", "/healthz?format=json")
        except OSError as error:  # not listening yet
            last = error
        else:
            if response.status == 200:
                return json.loads(body)
            last = (response.status, body)
        time.sleep(0.5)
    raise AssertionError(f"/healthz never answered 200: {last}\n{''.join(served.lines)}")
