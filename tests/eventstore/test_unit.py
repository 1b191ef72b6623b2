"""The command unit works for any aggregate: a tally, defined here, needs nothing from accounts.

A tally counts up or down and never goes below zero. It registers with the store
like the bank's accounts do (type, fold, snapshot codec and policy, upcasters), and
an inline projection of its own keeps one row per tally.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from django.db import connection

from eventstore import commands, db, projections, registry, snapshots
from eventstore.commands import Unit, run_command
from eventstore.models import CommandLog, Snapshot
from eventstore.store import EventStore, NewEvent
from eventstore.upcasting import upcasters
from tests.support import without_trigger

pytestmark = pytest.mark.django_db

TALLY = "Tally"


@dataclass(frozen=True)
class Tally:
    id: uuid.UUID
    total: int = 0
    version: int = 0


@dataclass(frozen=True)
class Counted:
    by: int
    event_type = "Counted"

    def to_data(self):
        return {"by": self.by, "schema_version": 2}


class BelowZero(Exception):
    pass


def fold(tally_id, events, start):
    tally = start or Tally(tally_id)
    for version, event_type, data in events:
        assert event_type == "Counted"
        tally = Tally(tally.id, tally.total + data["by"], version)
    return tally


def count(tally: Tally, by: int) -> list[Counted]:
    if tally.total + by < 0:
        raise BelowZero(f"{tally.total} cannot go down by {-by}")
    return [Counted(by)]


class TallyTotals(projections.Projection):
    """Reads its table and the log before writing: a read inside a command sees the command's writes."""

    name = "tally_totals"
    tables = ("test_tally_totals",)
    aggregate_types = frozenset({TALLY})
    inline = True

    def apply(self, events, tables):
        for event in events:
            (stored,) = db.fetchone("SELECT count(*) FROM events WHERE aggregate_id = %s", [event.aggregate_id])
            row = db.fetchone(
                f"SELECT total FROM {tables['test_tally_totals']} WHERE tally_id = %s", [event.aggregate_id]
            )
            total = (row[0] if row else 0) + event.data["by"]
            db.write(
                f"INSERT INTO {tables['test_tally_totals']} (tally_id, total, version, events_seen) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (tally_id) DO UPDATE "
                "SET total = EXCLUDED.total, version = EXCLUDED.version, events_seen = EXCLUDED.events_seen",
                [event.aggregate_id, total, event.version, stored],
            )


TALLY_AGGREGATE = registry.Aggregate(
    type=TALLY,
    event_types=frozenset({"Counted"}),
    fold=fold,
    to_snapshot=lambda tally: {"id": str(tally.id), "total": tally.total, "version": tally.version},
    from_snapshot=lambda state: Tally(uuid.UUID(state["id"]), int(state["total"]), int(state["version"])),
    state_schema=1,
    snapshot_every=2,
    upcasters={("Counted", 1): lambda data: {"by": int(data["by"]), "schema_version": 2}},
)


@pytest.fixture
def tally(monkeypatch):
    """The tally registered for one test, and its read model's table."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE test_tally_totals (tally_id uuid PRIMARY KEY, total bigint, version int, events_seen int)"
        )
    registry.register_aggregate(TALLY_AGGREGATE)
    monkeypatch.setitem(projections.registry, "tally_totals", TallyTotals())
    yield TALLY_AGGREGATE
    del registry.aggregates[TALLY]
    del upcasters._steps[("Counted", 1)]
    # A transactional test commits: take its table and its tallies' events away again.
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE test_tally_totals")
    without_trigger("events_no_delete", "DELETE FROM events WHERE aggregate_type = %s", [TALLY])


def add(tally_id, by, *, key=None, new=False):
    def handle(unit: Unit) -> None:
        (state,) = [unit.new(TALLY_AGGREGATE, tally_id)] if new else unit.load(TALLY_AGGREGATE, tally_id)
        unit.record(state, count(state, by))

    return run_command("count", arguments={"tally": str(tally_id), "by": by}, idempotency_key=key, handle=handle)


def row(tally_id):
    with connection.cursor() as cursor:
        cursor.execute("SELECT total, version, events_seen FROM test_tally_totals WHERE tally_id = %s", [tally_id])
        return cursor.fetchone()


def test_a_registered_aggregate_runs_commands_with_its_inline_projection_and_snapshots(tally):
    tally_id = uuid.uuid4()
    assert add(tally_id, 5, new=True) == [Tally(tally_id, 5, 1)]
    add(tally_id, 3)
    (after,) = add(tally_id, -6)
    assert after == Tally(tally_id, 2, 3)
    assert [e.data for e in EventStore().load(tally_id)] == [{"by": n, "schema_version": 2} for n in (5, 3, -6)]
    # The projection read the log inside each command and saw that command's own event.
    assert row(tally_id) == (2, 3, 3)
    # Every 2 events, the tally's snapshot codec and schema.
    snapshot = Snapshot.objects.get(aggregate_id=tally_id)
    assert (snapshot.aggregate_type, snapshot.version, snapshot.schema_version) == (TALLY, 2, 1)
    assert snapshot.state == {"id": str(tally_id), "total": 8, "version": 2}
    assert snapshots.load_at(TALLY_AGGREGATE, tally_id) == after
    assert snapshots.load_at(TALLY_AGGREGATE, tally_id, version=1) == Tally(tally_id, 5, 1)


def test_a_refused_command_stores_nothing_and_a_repeated_key_answers_from_the_log(tally):
    tally_id = uuid.uuid4()
    add(tally_id, 1, new=True)
    with pytest.raises(BelowZero):
        add(tally_id, -2, key="form-1")
    assert not CommandLog.objects.filter(key__endswith=":form-1").exists()
    first = add(tally_id, 4, key="form-2")
    with commands.outcome() as seen:
        again = add(tally_id, 4, key="form-2")
    assert seen.replayed and again == first == [Tally(tally_id, 5, 2)]
    assert CommandLog.objects.get(key__endswith=":form-2").result == {"aggregates": [[TALLY, str(tally_id), 2]]}
    assert row(tally_id) == (5, 2, 2)


def test_old_payloads_are_upcast_on_every_read_path(tally):
    tally_id = uuid.uuid4()
    EventStore().append(tally_id, TALLY, 0, [NewEvent("Counted", {"by": "7"})])  # schema 1: a string
    (after,) = add(tally_id, 1)
    assert after == Tally(tally_id, 8, 2)
    assert EventStore().load(tally_id)[0].data == {"by": 7, "schema_version": 2}


def test_recording_onto_a_state_the_unit_does_not_hold_is_refused(tally):
    tally_id = uuid.uuid4()
    add(tally_id, 1, new=True)

    def handle(unit: Unit) -> None:
        (state,) = unit.load(TALLY_AGGREGATE, tally_id)
        unit.record(state, count(state, 1))
        unit.record(state, count(state, 1))  # the state before the first record: stale

    with pytest.raises(ValueError, match="as it holds it now"):
        run_command("count twice", arguments={}, idempotency_key=None, handle=handle)
    assert len(EventStore().load(tally_id)) == 1


def test_an_unregistered_aggregate_is_refused_by_name():
    nobody = registry.Aggregate("Nobody", frozenset(), fold, lambda tally: {}, lambda state: Tally(uuid.uuid4()))

    def handle(unit: Unit) -> None:
        unit.load(nobody, uuid.uuid4())

    with pytest.raises(LookupError, match="the aggregate type 'Nobody' is not registered"):
        run_command("nothing", arguments={}, idempotency_key=None, handle=handle)


def test_an_aggregates_events_are_recorded_in_one_call(tally):
    tally_id = uuid.uuid4()
    add(tally_id, 1, new=True)

    def handle(unit: Unit) -> None:
        (state,) = unit.load(tally, tally_id)
        after = unit.record(state, count(state, 1))
        unit.record(after, count(after, 1))

    with pytest.raises(ValueError, match="already has events recorded in this command"):
        run_command("count twice", arguments={}, idempotency_key=None, handle=handle)
    assert len(EventStore().load(tally_id)) == 1


def test_registering_an_aggregate_type_twice_is_refused(tally):
    with pytest.raises(ValueError, match="already registered"):
        registry.register_aggregate(tally)


@pytest.mark.django_db(transaction=True)
def test_a_command_refused_after_a_write_went_out_leaves_nothing_behind(tally, monkeypatch):
    tally_id = uuid.uuid4()
    add(tally_id, 1, new=True)
    original = TallyTotals.apply

    def apply_then_fail(self, events, tables):
        original(self, events, tables)  # its read sent the command's events first
        raise BelowZero("refused after the events went out")

    monkeypatch.setattr(TallyTotals, "apply", apply_then_fail)
    with pytest.raises(BelowZero):
        add(tally_id, 1)
    assert [e.version for e in EventStore().load(tally_id)] == [1]
