"""make serve: gunicorn and the projection runner as production runs them, behind a TLS proxy.

The test is the proxy: it speaks plain HTTP to gunicorn and adds the
X-Forwarded-Proto: https a proxy adds. The web connects as the application role
and the runner as the runner role, as a bank's would.
"""

import json
import os
import re
import uuid
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection
from django.urls import reverse

from eventstore.models import Event
from harness.replication import free_port
from tests.factories import PASSWORD, AccountFactory, UserFactory
from tests.support import Proxy, Served, production_password, wait_until_healthy

pytestmark = pytest.mark.django_db(transaction=True)


def url_as(role: str) -> str:
    """The test database's URL for `role` (LOGIN, no password: the test servers trust local connections)."""
    params = connection.get_connection_params()
    host, port, name = params.get("host", ""), params.get("port") or 5432, params["dbname"]
    if host.startswith("/"):
        return f"postgresql://{role}@/{name}?host={quote(host)}&port={port}"
    return f"postgresql://{role}@{host}:{port}/{name}"


def test_make_serve_serves_staff_through_the_proxy_logs_json_with_the_commands_correlation_id_and_stops_cleanly(
    roles,
):
    app, runner = roles
    teller = production_password(UserFactory(username=f"serve_teller_{uuid.uuid4().hex[:6]}", role="teller"))
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
        ready, body = proxy.request("GET", "/readyz?format=json")
        assert (ready.status, json.loads(body)) == (200, {"Database(alias='default')": "OK"})

        plain, _ = proxy.request("GET", "/login/", https=False)  # not through the proxy's HTTPS
        assert plain.status == 301 and plain.getheader("Location") == "https://127.0.0.1/login/"
        for probed in ("/readyz", "/healthz"):  # a load balancer's or a monitor's probe, over plain HTTP
            assert proxy.request("GET", probed, https=False)[0].status == 200

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
