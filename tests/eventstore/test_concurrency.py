"""Racing writers: optimistic concurrency keeps every history 1..N without gaps."""

import threading

import pytest
from django.db import transaction

from eventstore.store import ConcurrencyConflict, NewEvent
from tests.support import new_id, run_threads

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def current_version(store, aggregate):
    events = store.load(aggregate)
    return events[-1].version if events else 0


def test_two_writers_at_the_same_version_one_wins_one_conflicts(store):
    aggregate = new_id()
    store.append(aggregate, "Thing", 0, [NewEvent("Made", {})])
    both_loaded = threading.Barrier(2)
    outcomes = {}

    def writer(index):
        try:
            with transaction.atomic():
                version = current_version(store, aggregate)
                both_loaded.wait(timeout=10)
                store.append(aggregate, "Thing", version, [NewEvent("Painted", {"by": index})])
            outcomes[index] = "appended"
        except ConcurrencyConflict:
            outcomes[index] = "conflict"

    run_threads(writer, 2)
    assert sorted(outcomes.values()) == ["appended", "conflict"]
    (winner,) = [i for i, outcome in outcomes.items() if outcome == "appended"]
    history = store.load(aggregate)
    assert [e.version for e in history] == [1, 2]
    assert history[1].data == {"by": winner}


def test_eight_writers_two_hundred_appends_leave_one_gapless_history(store):
    aggregate = new_id()
    appends_per_writer = 25
    succeeded, conflicts = [], []
    lock = threading.Lock()

    def writer(index):
        done = 0
        while done < appends_per_writer:
            try:
                with transaction.atomic():
                    version = current_version(store, aggregate)
                    store.append(aggregate, "Thing", version, [NewEvent("Tick", {"writer": index, "n": done})])
                with lock:
                    succeeded.append((index, done))
                done += 1
            except ConcurrencyConflict:
                with lock:
                    conflicts.append(index)

    run_threads(writer, 8)
    history = store.load(aggregate)
    assert [e.version for e in history] == list(range(1, 201))
    assert sorted((e.data["writer"], e.data["n"]) for e in history) == sorted(succeeded)
    assert len(succeeded) == 200
    print(f"8 writers, 200 appends, {len(conflicts)} conflicts retried")
