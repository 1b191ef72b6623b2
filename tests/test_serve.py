"""make serve: gunicorn and the projection runner as production runs them, behind a TLS proxy.

The test is the proxy: it speaks plain HTTP to gunicorn and adds the
X-Forwarded-Proto: https a proxy adds. The web connects as the application role
and the runner as the runner role, as a bank's would.
"""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from http.cookies import SimpleCookie
from urllib.parse import quote, urlencode

import pytest
from django.conf import settings
from django.db import connection
from django.urls import reverse

from eventstore.models import Event
from tests.factories import PASSWORD, AccountFactory, UserFactory
from tests.support import ROOT

pytestmark = pytest.mark.django_db(transaction=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def url_as(role: str) -> str:
    """The test database's URL for `role` (LOGIN, no password: the test servers trust local connections)."""
    params = connection.get_connection_params()
    host, port, name = params.get("host", ""), params.get("port") or 5432, params["dbname"]
    if host.startswith("/"):
        return f"postgresql://{role}@/{name}?host={quote(host)}&port={port}"
    return f"postgresql://{role}@{host}:{port}/{name}"


class Served:
    """`make serve` in a process group of its own, its log lines (standard error) collected as they come."""

    def __init__(self, env: dict[str, str]) -> None:
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


def test_make_serve_serves_staff_through_the_proxy_logs_json_with_the_commands_correlation_id_and_stops_cleanly(
    roles,
):
    app, runner = roles
    teller = UserFactory(username=f"serve_teller_{uuid.uuid4().hex[:6]}", role="teller")
    account = AccountFactory(initial_deposit=10_000)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE")}
    env |= {
        "DATABASE_URL": url_as(app),
        "RUNNER_DATABASE_URL": url_as(runner),
        "SECRET_KEY": "a-secret-for-this-test-only-" + uuid.uuid4().hex * 2,
        "ALLOWED_HOSTS": "127.0.0.1",
        "EVENTSTORE_SIGNING_KEYS": settings.EVENTSTORE_SIGNING_KEYS,  # the keys the test's events were signed with
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
        "PYTHONUNBUFFERED": "1",
    }
    served = Served(env)
    try:
        proxy = Proxy(port)
        health = wait_until_healthy(proxy, served)
        assert set(health.values()) == {"OK"}

        plain, _ = proxy.request("GET", "/login/", https=False)  # not through the proxy's HTTPS
        assert plain.status == 301 and plain.getheader("Location") == "https://127.0.0.1/login/"

        login, page = proxy.request("GET", "/login/")
        assert login.status == 200 and "csrftoken" in proxy.cookies
        signed_in, _ = proxy.request("POST", "/login/", {"username": teller.username, "password": PASSWORD})
        assert signed_in.status == 302, "".join(served.lines[-20:])
        assert signed_in.getheader("Location") == reverse("accounts:dashboard")

        command = reverse("accounts:command", args=[account.id, "deposit"])
        deposited, _ = proxy.request("POST", command, {
            "deposit-amount": "12.50", "deposit-source": "cash", "deposit-confirmed": "1",
            "deposit-idempotency_key": str(uuid.uuid4()), "deposit-expected_version": str(account.version),
        })  # fmt: skip
        assert deposited.status == 302, deposited.getheader("Location")
        request_id = deposited.getheader("X-Request-ID")
        event = Event.objects.filter(aggregate_id=account.id).order_by("-version").first()
        assert (event.event_type, event.event_data["amount"]) == ("Deposited", 1250)
        assert event.metadata["correlation_id"] == request_id and event.metadata["actor"] == teller.username

        line = next(line for line in served.logged() if line.get("correlation_id") == request_id)
        assert (line["path"], line["status"], line["actor"], line["level"]) == (command, 302, teller.username, "INFO")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+\+00:00", line["time"])
        assert line["request_id"] == request_id

        assert wait_until_healthy(proxy, served)  # the runner has applied the deposit too
    finally:
        status = served.stop()
    assert status == 0, "".join(served.lines[-30:])
    messages = [line["message"] for line in served.logged()]
    assert "stopped" in messages  # the runner, after its batch
    assert any(message.startswith("Shutting down: Master") for message in messages)  # gunicorn, as JSON too
