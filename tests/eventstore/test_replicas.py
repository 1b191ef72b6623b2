"""eventstore.replicas without a replica: WAL positions, how stale a replica is by them, and the
settings that name replicas. tests/test_replicas.py runs a real primary and replica."""

import time

import psycopg
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection

from config.base import databases
from eventstore import db, replicas


def test_a_wal_position_reads_and_writes_as_postgresql_writes_it():
    assert replicas.lsn("16/B374D848") == 0x16_B374D848
    assert replicas.lsn("0/0") == 0
    assert replicas.lsn_text(0x16_B374D848) == "16/B374D848"


def test_a_replica_is_as_stale_as_the_oldest_primary_position_it_has_not_replayed(settings):
    settings.REPLICA_MAX_LAG_SECONDS = 30
    seen = replicas._Seen()
    seen.note(100, at=0.0)
    seen.note(200, at=1.0)
    seen.note(200, at=2.0)  # nothing written since 1.0: the replica missing it is stale since 1.0
    seen.note(300, at=5.0)
    assert seen.behind(50, now=10.0) == 10.0
    assert seen.behind(100, now=10.0) == 9.0
    assert seen.behind(250, now=10.0) == 5.0
    assert seen.behind(300, now=10.0) == 0.0  # replayed all it has seen: not behind, however idle
    assert seen.behind(400, now=10.0) == 0.0


def test_positions_older_than_twice_the_lag_limit_are_forgotten_but_the_bound_stays_a_lower_one(settings):
    settings.REPLICA_MAX_LAG_SECONDS = 1
    seen = replicas._Seen()
    for position, at in ((100, 0.0), (200, 1.0), (300, 5.0)):
        seen.note(position, at=at)
    assert list(seen._positions) == [200, 300]  # 100 at 0.0 is gone; 200 at 1.0 marks the horizon
    assert seen.behind(50, now=10.0) == 9.0  # at least 9 s: no longer known to be 10


@pytest.mark.django_db
def test_without_replicas_every_read_is_the_primarys_and_choosing_asks_no_database(django_assert_num_queries):
    assert replicas.aliases() == []
    with django_assert_num_queries(0):
        assert replicas.choose(after=123) == replicas.Reading(db.PRIMARY)
    assert replicas.states() == []


def test_replica_urls_become_replica_aliases_that_time_out_quickly_and_mirror_the_test_database(monkeypatch):
    monkeypatch.setenv("REPLICA_DATABASE_URLS", "postgres://app@replica-a:5432/bank,postgres://app@replica-b/bank")
    found = databases("postgres://app@primary:5432/bank")
    assert list(found) == ["default", "replica_1", "replica_2"]
    assert (found["replica_1"]["HOST"], found["replica_2"]["HOST"]) == ("replica-a", "replica-b")
    assert found["replica_1"]["OPTIONS"]["connect_timeout"] == 2
    silent = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3,
              "tcp_user_timeout": 10_000}  # fmt: skip
    assert found["replica_2"]["OPTIONS"].items() >= silent.items()  # a replica gone silent mid-query
    assert found["replica_2"]["TEST"] == {"MIRROR": "default"}
    assert "connect_timeout" not in found["default"]["OPTIONS"]


@pytest.mark.parametrize("urls", ["not-a-url", "postgres://app@replica/bank,mysql://app@other/bank"])
def test_a_replica_url_that_is_not_postgresqls_stops_the_start_naming_it(monkeypatch, urls):
    monkeypatch.setenv("REPLICA_DATABASE_URLS", urls)
    with pytest.raises(ImproperlyConfigured, match=r"REPLICA_DATABASE_URLS: replica \d is not a PostgreSQL URL"):
        databases("postgres://app@primary:5432/bank")


def test_the_router_sends_the_banks_reads_where_the_request_chose_and_everything_else_to_the_primary():
    from django.contrib.sessions.models import Session

    from accounts.models import Account
    from eventstore.models import Event

    router = db.Router()
    with db.reading_from("replica_1"):
        assert [router.db_for_read(model) for model in (Account, Event, Session)] == [
            "replica_1",
            "replica_1",
            "default",
        ]
        assert router.db_for_write(Account) == "default" and db.reads() == "replica_1"
    assert router.db_for_read(Account) == "default" and db.reads() == "default"
    assert router.allow_migrate("replica_1", "accounts") is False and router.allow_migrate("default", "accounts")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "error, from_the_replica",
    [
        (psycopg.errors.SerializationFailure("canceling statement due to conflict with recovery"), True),
        (psycopg.errors.AdminShutdown("terminating connection due to conflict with recovery"), True),
        (psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"), True),
        (psycopg.OperationalError("connection failed: Connection refused"), True),
        (psycopg.errors.QueryCanceled("canceling statement due to statement timeout"), False),
        (psycopg.errors.DivisionByZero("division by zero"), False),
        (psycopg.errors.UndefinedTable('relation "x" does not exist'), False),
    ],
)
def test_a_read_is_tried_again_on_the_primary_only_for_what_a_replica_alone_would_fail_at(error, from_the_replica):
    """Replica failures (gone, or a query cancelled in a conflict with recovery) as Django raises them;
    a query that would fail on the primary too is not read twice."""
    with pytest.raises(DatabaseError) as raised, connection.wrap_database_errors:
        raise error
    assert replicas.is_replica_failure(raised.value) is from_the_replica


def test_a_position_the_primary_never_reached_is_not_waited_for(monkeypatch, settings):
    """After a restore or a new primary, a session's position from before it lies ahead of the log:
    waiting for a replica to reach it would cost every page the whole wait, for good."""
    settings.REPLICA_WAIT_FOR_WRITES_MS = 5_000
    monkeypatch.setattr(replicas, "aliases", lambda: ["replica_1"])
    monkeypatch.setattr(replicas, "primary_position", lambda: 1_000)
    monkeypatch.setattr(replicas, "replayed", lambda alias: 1_000)
    started = time.monotonic()
    assert replicas.choose(after=5_000) == replicas.Reading("replica_1")
    assert time.monotonic() - started < 1
    monkeypatch.setattr(replicas, "replayed", lambda alias: 900)  # behind the primary: still waited for
    settings.REPLICA_WAIT_FOR_WRITES_MS = 50
    assert replicas.choose(after=950) == replicas.Reading(db.PRIMARY)
