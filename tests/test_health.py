"""/healthz: 200 while the database answers and the runners keep up, 503 with the reason otherwise.
/readyz: 200 while the database answers, whatever the runners and replicas do."""

import threading

import pytest
from django.db import connection, connections
from django.test import Client

from eventstore import projections
from harness.replication import free_port
from tests.factories import AccountFactory
from tests.support import settle

pytestmark = pytest.mark.django_db(transaction=True)


def health(**headers):
    response = Client().get("/healthz", HTTP_ACCEPT="application/json", **headers)  # nobody signed in
    return response.status_code, response.json()


def caught_up():
    settle()
    for projection in projections.asynchronous():
        while projections.catch_up(projection):
            pass


def test_healthz_answers_200_without_a_login_when_the_runners_are_current():
    AccountFactory(initial_deposit=10)
    caught_up()
    status, checks = health()
    assert status == 200
    assert checks == {"Database(alias='default')": "OK", "ProjectionsCurrent()": "OK", "ReplicasCurrent()": "OK"}
    # The checks ran in threads of their own, which closed their connections: asked every few
    # seconds, /healthz must leave no session behind.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] == 0


def test_healthz_answers_503_naming_a_projection_stopped_at_an_event():
    AccountFactory(initial_deposit=10)
    caught_up()
    projections.ProjectionCheckpoint.objects.filter(name="daily_statements").update(failed_event_id=1234)
    status, checks = health()
    assert status == 503
    assert checks["ProjectionsCurrent()"] == "Unavailable: daily_statements stopped at event 1234"


def test_healthz_answers_503_when_a_runner_falls_behind_in_events_or_in_time(settings):
    caught_up()
    for n in range(3):
        AccountFactory(initial_deposit=n)
    settle()
    settings.HEALTH_PROJECTION_LAG_EVENTS = 3
    status, checks = health()
    assert status == 503 and "has 3 or more events to apply" in checks["ProjectionsCurrent()"]
    settings.HEALTH_PROJECTION_LAG_EVENTS, settings.HEALTH_PROJECTION_LAG_SECONDS = 1000, -1
    status, checks = health()
    assert status == 503 and "has had events waiting for" in checks["ProjectionsCurrent()"]
    caught_up()
    assert health()[0] == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_pages_show_no_data_and_read_nothing_but_the_checks(path):
    account = AccountFactory(initial_deposit=10, owner="Zoë Quietly")
    caught_up()
    response = Client().get(path)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Zoë" not in page and str(account.id) not in page


def ready():
    response = Client().get("/readyz", HTTP_ACCEPT="application/json")  # nobody signed in
    return response.status_code, response.json()


def test_readyz_keeps_the_server_in_the_rotation_while_a_runner_is_stopped():
    """A stopped runner is every web server's problem alike, and pages go on without it: the load
    balancer must not take them all out for it (the monitoring, asking /healthz, raises the alarm)."""
    AccountFactory(initial_deposit=10)
    caught_up()
    projections.ProjectionCheckpoint.objects.filter(name="daily_statements").update(failed_event_id=1234)
    assert health()[0] == 503
    assert ready() == (200, {"Database(alias='default')": "OK"})


def test_readyz_answers_503_when_the_database_does_not_answer():
    primary = connections.settings["default"]  # what the check's own thread connects with
    kept = {name: primary[name] for name in ("HOST", "PORT")}
    port = str(free_port())
    primary |= {"HOST": "127.0.0.1", "PORT": port}
    try:
        status, checks = ready()
    finally:
        primary |= kept
    assert status == 503
    said = checks["Database(alias='default')"]
    assert said.startswith("Unavailable: ") and port not in said  # nothing of where the database lives


def test_a_check_stuck_behind_a_lock_gives_up_at_the_webs_lock_timeout_and_frees_the_worker(raw_connect, settings):
    settings.WEB_LOCK_TIMEOUT_MS = 200
    caught_up()
    locker = raw_connect()  # as a projection swap or a migration would
    locker.execute("LOCK TABLE projection_checkpoints IN ACCESS EXCLUSIVE MODE")
    answered = []
    asking = threading.Thread(target=lambda: answered.append(health()))
    try:
        asking.start()
        asking.join(timeout=10)
        assert answered, "/healthz was still waiting for the lock after 10 s"
    finally:
        locker.rollback()
        asking.join()
    status, checks = answered[0]
    assert status == 503
    assert checks["ProjectionsCurrent()"] == "Unavailable: the runners' progress could not be read (lock timeout)"
