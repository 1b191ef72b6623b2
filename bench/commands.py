"""The command cycle: services.deposit against a raw psycopg load-and-insert loop.

services.deposit does everything a command does: advisory lock and load
(snapshot + tail), decide, append, inline projection, command log (whose key
answers a repeat), commit. The raw loop, on its own connection to the same database, loads the
account's events, folds the balance and inserts one event, one transaction each.
Every round starts both sides on a fresh account, so raw psycopg never pays for
a long history (where snapshots would favour the services). Target: >= 0.8.
"""

import json
import uuid

import psycopg

from bench.figures import alternate, rate, report

ROUNDS = 20
PER_ROUND = 60
TARGET = 0.8

RAW_LOAD = "SELECT version, event_type, event_data FROM events WHERE aggregate_id = %s ORDER BY version"
RAW_INSERT = (
    "INSERT INTO events (aggregate_id, aggregate_type, event_type, event_data, metadata, version) "
    "VALUES (%s, 'BankAccount', %s, %s::jsonb, %s::jsonb, %s)"
)


def raw_open(conn) -> uuid.UUID:
    account_id = uuid.uuid4()
    data = {"account_id": str(account_id), "owner": "Raw", "currency": "EUR", "initial_balance": 0, "schema_version": 2}
    conn.execute(RAW_INSERT, [account_id, "Opened", json.dumps(data), "{}", 1])
    return account_id


def raw_deposit(conn, account_id, amount):
    with conn.transaction():
        balance, version = 0, 0
        for version, event_type, data in conn.execute(RAW_LOAD, [account_id]):  # noqa: B007  the last version read is the one to follow
            if event_type == "Opened":
                balance = data["initial_balance"]
            elif event_type in ("Deposited", "TransferReceived"):
                balance += data["amount"]
            elif event_type in ("Withdrawn", "TransferSent"):
                balance -= data["amount"]
        metadata = json.dumps({"correlation_id": str(uuid.uuid4()), "source": "bench"})
        conn.execute(
            RAW_INSERT,
            [account_id, "Deposited", json.dumps({"amount": amount, "source": "bench"}), metadata, version + 1],
        )
    return balance + amount


def services_round(per_round):
    from accounts import services

    def run():
        account = services.open_account(owner="Bench", initial_deposit=0)
        for _ in range(per_round):
            services.deposit(account_id=account.id, amount=100, source="bench", idempotency_key=str(uuid.uuid4()))

    return run


def run(conninfo) -> bool:
    raw = psycopg.connect(**conninfo, autocommit=True)

    def raw_round():
        account_id = raw_open(raw)
        for _ in range(PER_ROUND):
            raw_deposit(raw, account_id, 100)

    raw_round(), services_round(PER_ROUND)()
    seconds = alternate(ROUNDS, raw=raw_round, services=services_round(PER_ROUND))
    raw.close()
    raw_rate = rate(PER_ROUND, seconds["raw"])
    services_rate = rate(PER_ROUND, seconds["services"])
    ratio = services_rate / raw_rate
    report(
        f"command cycle: deposits on one connection ({ROUNDS} rounds x {PER_ROUND} on a fresh account, median)",
        [
            ("raw psycopg load + insert", raw_rate, "deposits/s"),
            ("services.deposit", services_rate, "deposits/s"),
            ("ratio services / raw", ratio, "PASS" if ratio >= TARGET else "FAIL"),
        ],
        target=f"ratio >= {TARGET}",
    )
    return ratio >= TARGET
