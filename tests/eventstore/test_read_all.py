"""read_all: the commit-safe global read never skips an event committed late."""

import random
import threading
import time

import pytest
from django.db import transaction

from eventstore.store import START, ConcurrencyConflict, NewEvent, Position
from tests.support import insert_event, new_id, run_threads

pytestmark = pytest.mark.django_db(transaction=True)


def insert(conn, aggregate, version):
    insert_event(aggregate, "Made", {}, version=version, aggregate_type="Thing", connection=conn)


def read_everything(store, position=START, mine=None):
    seen = []
    while True:
        page = store.read_all(after=position, limit=50)
        if not page.events:
            return seen, position
        seen += [e for e in page.events if mine is None or e.aggregate_id in mine]
        position = page.position


def test_an_open_transaction_holds_back_later_commits_until_it_ends(store, raw_connect):
    """The classic gap: id 10 commits after id 11. A reader must not pass 10."""
    _, position = read_everything(store)
    slow, fast = raw_connect(), raw_connect()
    slow_aggregate, fast_aggregate = new_id(), new_id()
    insert(slow, slow_aggregate, 1)  # smaller id, still uncommitted
    insert(fast, fast_aggregate, 1)
    fast.commit()

    seen, held_at = read_everything(store, position)
    assert [e.aggregate_id for e in seen] == []
    assert held_at == position

    slow.commit()
    seen, _ = read_everything(store, held_at)
    assert [e.aggregate_id for e in seen] == [slow_aggregate, fast_aggregate]


def test_a_rolled_back_transaction_is_never_read(store, raw_connect):
    _, position = read_everything(store)
    conn = raw_connect()
    insert(conn, new_id(), 1)
    conn.rollback()
    assert read_everything(store, position)[0] == []


def test_read_all_pages_resume_from_the_returned_position(store):
    _, position = read_everything(store)
    aggregate = new_id()
    store.append(aggregate, "Thing", 0, [NewEvent("Tick", {"n": n}) for n in range(7)])
    first = store.read_all(after=position, limit=3)
    second = store.read_all(after=first.position, limit=3)
    third = store.read_all(after=second.position, limit=3)
    assert [e.data["n"] for e in first.events + second.events + third.events] == list(range(7))
    assert store.read_all(after=third.position).events == []
    assert third.position == Position(third.events[-1].transaction_id, third.events[-1].id)


def test_reader_sees_every_committed_event_once_in_order_while_four_writers_append(store):
    aggregates = [new_id() for _ in range(3)]
    mine = set(aggregates)
    _, start = read_everything(store)
    writers_done = threading.Event()
    seen = []

    def reader():
        position = start
        while True:
            finished = writers_done.is_set()
            events, position = read_everything(store, position, mine)
            seen.extend(events)
            if finished:
                return
            time.sleep(0.005)

    def writer(index):
        rng = random.Random(index)
        for n in range(40):
            aggregate = rng.choice(aggregates)
            try:
                with transaction.atomic():
                    history = store.load(aggregate)
                    version = history[-1].version if history else 0
                    store.append(aggregate, "Thing", version, [NewEvent("Tick", {"w": index, "n": n})])
                    fate = rng.random()
                    if fate < 0.15:
                        time.sleep(0.05)  # hold the transaction open a while
                    elif fate < 0.3:
                        transaction.set_rollback(True)
            except ConcurrencyConflict:
                pass

    reading = threading.Thread(target=lambda: run_threads(lambda _: reader(), 1))
    reading.start()
    run_threads(writer, 4)
    writers_done.set()
    reading.join(timeout=60)

    committed = [e for aggregate in aggregates for e in store.load(aggregate)]
    assert sorted(e.id for e in seen) == sorted(e.id for e in committed)
    assert len({e.id for e in seen}) == len(seen)
    for aggregate in aggregates:
        versions = [e.version for e in seen if e.aggregate_id == aggregate]
        assert versions == list(range(1, len(versions) + 1))
    assert len(committed) > 40


@pytest.mark.django_db(transaction=False)
def test_the_global_order_is_numeric_in_transaction_ids_not_textual(store):
    """xid 100 comes after xid 99: ordering by the ::text column would put it first."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE events DISABLE TRIGGER events_append_guard")  # to forge old xids; rolled back
        for xid in (100, 99):
            cursor.execute(
                "INSERT INTO events (aggregate_id, aggregate_type, event_type, event_data, version, transaction_id) "
                "VALUES (%s, 'Thing', 'Made', '{}', 1, %s::text::xid8)",
                [new_id(), str(xid)],
            )
        cursor.execute("ALTER TABLE events ENABLE TRIGGER events_append_guard")
    page = store.read_all(after=Position(98, 0), limit=2)
    assert [event.transaction_id for event in page.events] == [99, 100]
