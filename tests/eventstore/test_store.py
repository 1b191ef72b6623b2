"""EventStore.append and the per-aggregate loads."""

import datetime
import decimal
import uuid

import pytest
from django.db import DatabaseError, connection, transaction

from eventstore.context import metadata_context
from eventstore.db import clock
from eventstore.store import ConcurrencyConflict, InvalidAppend, NewEvent, chain_head
from tests.support import new_events, new_id

pytestmark = pytest.mark.django_db


def versions(store, aggregate):
    return [event.version for event in store.load(aggregate)]


def test_append_numbers_events_after_the_expected_version_and_returns_the_new_one(store):
    aggregate = new_id()
    first = store.append(aggregate, "Thing", 0, [NewEvent("Made", {"n": 1})])
    assert first.version == 1
    head = store.append(str(aggregate), "Thing", 1, [NewEvent("Painted", {"n": 2}), NewEvent("Sold", {"n": 3})])
    assert head.version == 3
    assert head.chain_hash == chain_head(aggregate, 3) != first.chain_hash == chain_head(aggregate, 1)
    loaded = store.load(aggregate)
    assert [(e.version, e.event_type, e.data) for e in loaded] == [
        (1, "Made", {"n": 1}),
        (2, "Painted", {"n": 2}),
        (3, "Sold", {"n": 3}),
    ]
    assert [e.aggregate_id for e in loaded] == [aggregate] * 3
    assert loaded[0].id < loaded[1].id < loaded[2].id
    assert loaded[1].transaction_id == loaded[2].transaction_id  # one call, one transaction


def test_append_writes_all_events_in_one_round_trip_given_its_time(store, round_trips):
    aggregate, now = new_id(), clock()
    with round_trips() as trace:
        store.append(aggregate, "Thing", 0, new_events("A", "B", "C", "D"), created_at=now)
    assert trace.count == 1
    assert trace.sent("INSERT INTO events")
    assert versions(store, aggregate) == [1, 2, 3, 4]


def test_append_at_a_stale_version_is_a_concurrency_conflict_and_stores_nothing(store):
    aggregate = new_id()
    store.append(aggregate, "Thing", 0, new_events("Made", "Painted"))
    with pytest.raises(ConcurrencyConflict) as caught:
        with transaction.atomic():
            store.append(aggregate, "Thing", 1, new_events("Sold", "Shipped", "Paid"))
    assert caught.value.aggregate_id == aggregate
    assert caught.value.expected_version == 1
    assert versions(store, aggregate) == [1, 2]


def test_other_database_errors_are_not_mistaken_for_conflicts(store):
    aggregate = new_id()
    store.append(aggregate, "Thing", 0, new_events("Made"))
    with pytest.raises(DatabaseError) as caught:
        with transaction.atomic():
            store.append(aggregate, "Other", 1, new_events("Made"))
    assert not isinstance(caught.value, ConcurrencyConflict)
    assert "is a Thing, not a Other" in str(caught.value)


def test_append_that_fails_half_way_stores_nothing(store):
    """The database rejects the second event; the first must not stay behind."""
    aggregate = new_id()
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION pg_temp.reject_poison() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'poisoned event'; END; $$"
        )
        cursor.execute(
            "CREATE TRIGGER reject_poison BEFORE INSERT ON events FOR EACH ROW "
            "WHEN (NEW.event_type = 'Poison') EXECUTE FUNCTION pg_temp.reject_poison()"
        )
    with pytest.raises(DatabaseError, match="poisoned event"):
        with transaction.atomic():
            store.append(aggregate, "Thing", 0, new_events("Made", "Poison", "Sold"))
    assert versions(store, aggregate) == []


def test_append_joins_the_callers_transaction(store):
    first, second = new_id(), new_id()

    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        with transaction.atomic():
            store.append(first, "Thing", 0, new_events("Made"))
            store.append(second, "Thing", 0, new_events("Made"))
            assert versions(store, first) == [1]
            raise Abort
    assert versions(store, first) == versions(store, second) == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"events": []}, "at least one event"),
        ({"events": [NewEvent("Made", {"when": datetime.date(2026, 1, 1)})]}, "not JSON-serialisable"),
        ({"events": [NewEvent("Made", {"amount": decimal.Decimal("1.5")})]}, "not JSON-serialisable"),
        ({"events": [NewEvent("Made", {"ratio": float("nan")})]}, "not JSON-serialisable"),
        ({"events": [NewEvent("Made", {"owner": "a\x00b"})]}, "NUL character"),
        ({"events": [NewEvent("Made", ["not", "an", "object"])]}, "must be a JSON object"),
        ({"events": [NewEvent("", {})]}, "event type must be a non-empty string"),
        ({"events": [NewEvent("X" * 256, {})]}, "at most 255"),
        ({"events": [("Made", {})]}, "NewEvent instances"),
        ({"expected_version": -1}, "expected version must be an integer of 0 or more"),
        ({"expected_version": "0"}, "expected version must be an integer"),
        ({"expected_version": True}, "expected version must be an integer"),
        ({"aggregate_id": "not-a-uuid"}, "is not a UUID"),
        ({"aggregate_id": 42}, "is not a UUID"),
        ({"aggregate_type": ""}, "aggregate type must be a non-empty string"),
        ({"metadata": {"actor": object()}}, "metadata is not JSON-serialisable"),
    ],
)
def test_bad_input_is_refused_before_reaching_the_database(store, round_trips, kwargs, message):
    call = {
        "aggregate_id": new_id(),
        "aggregate_type": "Thing",
        "expected_version": 0,
        "events": [NewEvent("Made", {}), NewEvent("Painted", {})],
        "metadata": None,
        **kwargs,
    }
    with round_trips() as trace:
        with pytest.raises(InvalidAppend, match=message):
            store.append(**call)
    assert trace.messages == []


def test_a_bad_second_event_stores_nothing(store):
    aggregate = new_id()
    with pytest.raises(InvalidAppend):
        store.append(aggregate, "Thing", 0, [NewEvent("Made", {}), NewEvent("Painted", {"at": object()})])
    assert versions(store, aggregate) == []


def test_load_after_and_up_to_a_version(store):
    aggregate = new_id()
    store.append(aggregate, "Thing", 0, new_events(*"ABCDE"))
    assert [e.event_type for e in store.load_after_version(aggregate, 2)] == ["C", "D", "E"]
    assert [e.event_type for e in store.load(aggregate, up_to_version=2)] == ["A", "B"]
    assert [e.event_type for e in store.load(aggregate, after_version=1, up_to_version=3)] == ["B", "C"]
    assert store.load_after_version(aggregate, 5) == []
    assert store.load(uuid.uuid4()) == []


@pytest.mark.django_db(transaction=True)
def test_load_as_of_a_time_keeps_what_was_stored_by_then(store):
    aggregate = new_id()
    store.append(aggregate, "Thing", 0, new_events("Made"))
    store.append(aggregate, "Thing", 1, new_events("Painted"))
    second_at = store.load(aggregate)[1].created_at
    store.append(aggregate, "Thing", 2, new_events("Sold"))
    assert [e.event_type for e in store.load(aggregate, as_of=second_at)] == ["Made", "Painted"]
    before_all = store.load(aggregate)[0].created_at - datetime.timedelta(microseconds=1)
    assert store.load(aggregate, as_of=before_all) == []


def test_metadata_comes_from_the_context_and_explicit_values_override_it(store):
    aggregate = new_id()
    with metadata_context(actor="teller1", actor_id=7, correlation_id="c-1", client_address="10.0.0.9"):
        store.append(aggregate, "Thing", 0, new_events("Made"), metadata={"correlation_id": "c-2", "reason": "why"})
    (event,) = store.load(aggregate)
    assert event.metadata == {
        "actor": "teller1",
        "actor_id": 7,
        "correlation_id": "c-2",
        "client_address": "10.0.0.9",
        "reason": "why",
    }


def test_events_of_one_append_share_metadata_and_get_a_correlation_id(store):
    aggregate = new_id()
    store.append(aggregate, "Thing", 0, new_events("Made", "Painted"))
    first, second = store.load(aggregate)
    assert first.metadata == second.metadata
    assert uuid.UUID(first.metadata["correlation_id"])
