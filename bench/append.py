"""Appends per second: EventStore.append against raw psycopg inserts.

One event per transaction on one connection, both sides writing the same table
(guards included) in the same run. Raw psycopg sends the very INSERT that
EventStore.append sends, unsigned, in autocommit, each its own transaction; the
ratio is what validation, metadata, signing (the chain hash and MAC) and the
Django connection cost on top. The store side follows its own head, as a
command does. Target: EventStore at least 0.8 of raw.
"""

import json
import uuid
from datetime import UTC, datetime

import psycopg

from bench.figures import alternate, rate, report

ROUNDS = 30
PER_ROUND = 150
TARGET = 0.8


def run(conninfo) -> bool:
    from eventstore.store import EventStore, NewEvent, insert_statement

    raw_insert = insert_statement(1)  # the very statement EventStore.append sends

    store = EventStore()
    raw = psycopg.connect(**conninfo, autocommit=True)
    raw_aggregate, store_aggregate = uuid.uuid4(), uuid.uuid4()
    versions, heads = {"raw": 0, "store": 0}, {}
    payload = {"amount": 1250, "source": "bench"}

    def raw_round():
        for _ in range(PER_ROUND):
            versions["raw"] += 1
            raw.execute(
                raw_insert,
                [
                    raw_aggregate,
                    "Bench",
                    "Ticked",
                    json.dumps(payload),
                    json.dumps({"correlation_id": str(uuid.uuid4())}),
                    versions["raw"],
                    datetime.now(UTC),
                    None,  # chain_hash, key_id, mac: raw psycopg signs nothing
                    None,
                    None,
                ],
            )

    def store_round():
        for _ in range(PER_ROUND):
            head = store.append(
                store_aggregate, "Bench", versions["store"], [NewEvent("Ticked", payload)],
                created_at=datetime.now(UTC), previous_hash=heads.get("store"),
            )  # fmt: skip
            versions["store"], heads["store"] = head.version, head.chain_hash

    raw_round(), store_round()  # warm both connections and caches
    seconds = alternate(ROUNDS, raw=raw_round, store=store_round)
    raw.close()
    raw_rate, store_rate = rate(PER_ROUND, seconds["raw"]), rate(PER_ROUND, seconds["store"])
    ratio = store_rate / raw_rate
    report(
        f"append: one event per transaction, one connection ({ROUNDS} rounds x {PER_ROUND}, median)",
        [
            ("raw psycopg", raw_rate, "appends/s"),
            ("EventStore.append", store_rate, "appends/s"),
            ("ratio", ratio, f"{'PASS' if ratio >= TARGET else 'FAIL'}"),
        ],
        target=f"ratio >= {TARGET}",
    )
    return ratio >= TARGET
