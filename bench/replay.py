"""Replaying an account: services.get_account against a raw psycopg fetch-and-fold.

Accounts of 10,000 and 100,000 events (an opening and deposits, written with
one INSERT ... SELECT, unsigned, then sealed as a log from before signing would be:
a load checks them against the seal as it checks signed ones). Without snapshots,
get_account folds the whole history, checking every event: target at most 1.5 times
the time raw psycopg takes to fetch, fold and check the same rows (each chain hash
recomputed with orjson and hashlib, the seal's MAC), which is the work any reader
that trusts no unsigned row must do. The unchecked raw fold is shown beside it.
With a snapshot (taken as a command would, at the last multiple of
EVENTSTORE_SNAPSHOT_EVERY), target under 5 ms and flat as history grows; and as
of the middle of the history, with the snapshots commands keep, under 5 ms too.
"""

import hashlib
import hmac
import io
import json
import statistics
import time
import uuid

import orjson
import psycopg

from bench.figures import report

SIZES = (10_000, 100_000)
REPEATS = 5
RATIO_TARGET = 1.5
SNAPSHOT_TARGET_MS = 5.0

HISTORY = """
INSERT INTO events (aggregate_id, aggregate_type, event_type, event_data, metadata, version)
SELECT %(id)s, 'BankAccount', 'Opened', %(opened)s::jsonb, '{}'::jsonb, 1
UNION ALL
SELECT %(id)s, 'BankAccount', 'Deposited',
       jsonb_build_object('amount', n, 'source', 'bench', 'schema_version', 2), '{}'::jsonb, n
  FROM generate_series(2, %(size)s) AS n
"""
RAW_FOLD = "SELECT event_type, event_data FROM events WHERE aggregate_id = %s ORDER BY version"
# What checking the history needs: every field the chain hash covers, and the seal that vouches for it.
RAW_CHECKED = """
SELECT e.aggregate_type, e.version, e.event_type, e.event_data::text, e.metadata::text,
       to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
  FROM events e WHERE e.aggregate_id = %s ORDER BY e.version
"""
RAW_SEAL = "SELECT aggregate_type, version, chain_hash, key_id, mac FROM event_seal WHERE aggregate_id = %s"


def make_history(conn, size: int) -> uuid.UUID:
    account_id = uuid.uuid4()
    opened = {
        "account_id": str(account_id),
        "owner": "Bench",
        "currency": "EUR",
        "initial_balance": 0,
        "schema_version": 2,
    }
    with conn.transaction():
        conn.execute(HISTORY, {"id": account_id, "opened": json.dumps(opened), "size": size})
    return account_id


def raw_fold(conn, account_id):
    balance = 0
    for event_type, data in conn.execute(RAW_FOLD, [account_id]):
        if event_type == "Opened":
            balance = data["initial_balance"]
        elif event_type == "Deposited":
            balance += data["amount"]
    return balance


def raw_checked_fold(conn, account_id, secrets):
    """The fold with the check every load makes: each event's chain hash recomputed, the seal's MAC."""
    balance, chain, key = 0, bytes(32), str(account_id)
    for aggregate_type, version, event_type, data, metadata, created in conn.execute(RAW_CHECKED, [account_id]):
        payload = orjson.loads(data)
        content = {"aggregate_id": key, "aggregate_type": aggregate_type, "version": version,
                   "event_type": event_type, "data": payload, "metadata": orjson.loads(metadata),
                   "created_at": created}  # fmt: skip
        chain = hashlib.sha256(chain + orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).digest()
        if event_type == "Opened":
            balance = payload["initial_balance"]
        elif event_type == "Deposited":
            balance += payload["amount"]
    aggregate_type, version, sealed, key_id, mac = conn.execute(RAW_SEAL, [account_id]).fetchone()
    seal = {"aggregate_id": key, "aggregate_type": aggregate_type, "version": version, "chain_hash": sealed.hex()}
    message = b"eventstore/seal\0" + orjson.dumps(seal, option=orjson.OPT_SORT_KEYS)
    assert chain == sealed and hmac.compare_digest(hmac.digest(secrets[key_id], message, "sha256"), mac)
    return balance


def timed(call, repeats=REPEATS):
    results, seconds = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        results.append(call())
        seconds.append(time.perf_counter() - started)
    assert all(result == results[0] for result in results), "every replay must give the same answer"
    return statistics.median(seconds), results[0]


def run(conninfo) -> bool:
    from django.conf import settings
    from django.core.management import call_command

    from accounts import services
    from eventstore import signing, snapshots
    from eventstore.models import Snapshot

    raw = psycopg.connect(**conninfo, autocommit=True)
    rows, met = [], True
    with_snapshot_ms = []
    histories = {size: make_history(raw, size) for size in SIZES}
    call_command("seal_event_store", stdout=io.StringIO())  # written unsigned by SQL: the seal vouches for them
    for size, account_id in histories.items():
        unchecked_seconds, raw_balance = timed(lambda account_id=account_id: raw_fold(raw, account_id))
        raw_seconds, checked_balance = timed(lambda a=account_id: raw_checked_fold(raw, a, signing.keys().secrets))
        assert checked_balance == raw_balance
        full_seconds, account = timed(lambda account_id=account_id: services.get_account(account_id), repeats=REPEATS)
        assert account.balance == raw_balance and account.version == size

        every = settings.EVENTSTORE_SNAPSHOT_EVERY
        at = snapshots.load(services.ACCOUNT, account_id, up_to_version=size - size % every - every)
        snapshots.save(services.ACCOUNT, at.state, at.chain_hash)
        snap_seconds, snapped = timed(
            lambda account_id=account_id: services.get_account(account_id), repeats=REPEATS * 4
        )
        assert snapped == account
        # The snapshots its commands would have kept, one every `every` events: a past view
        # from the middle of the history starts from the nearest.
        for version in range(every, size + 1, every):
            at = snapshots.load(services.ACCOUNT, account_id, up_to_version=version)
            snapshots.save(services.ACCOUNT, at.state, at.chain_hash)
        middle = size // 2 + every // 2
        past_seconds, past = timed(
            lambda a=account_id, v=middle: services.get_account(a, version=v), repeats=REPEATS * 4
        )
        assert past.version == middle
        Snapshot.objects.filter(aggregate_id=account_id).delete()

        ratio = full_seconds / raw_seconds
        met &= ratio <= RATIO_TARGET and snap_seconds * 1000 < SNAPSHOT_TARGET_MS
        met &= past_seconds * 1000 < SNAPSHOT_TARGET_MS
        with_snapshot_ms.append(snap_seconds * 1000)
        rows += [
            (f"{size:,} events: raw psycopg fetch + fold, unchecked", unchecked_seconds * 1000, "ms"),
            (f"{size:,} events: raw psycopg fetch + fold + chain check", raw_seconds * 1000, "ms"),
            (f"{size:,} events: get_account, no snapshot", full_seconds * 1000, "ms"),
            (f"{size:,} events: ratio", ratio, "PASS" if ratio <= RATIO_TARGET else "FAIL"),
            (f"{size:,} events: get_account, snapshot + {every} tail", snap_seconds * 1000,
             "ms " + ("PASS" if snap_seconds * 1000 < SNAPSHOT_TARGET_MS else "FAIL")),
            (f"{size:,} events: get_account as of version {middle:,}, kept snapshots", past_seconds * 1000,
             "ms " + ("PASS" if past_seconds * 1000 < SNAPSHOT_TARGET_MS else "FAIL")),
        ]  # fmt: skip
    raw.close()
    rows.append(("snapshot load, largest / smallest history", with_snapshot_ms[-1] / with_snapshot_ms[0], "x"))
    report(
        "replay: one account, median of repeated loads",
        rows,
        target=f"no-snapshot ratio <= {RATIO_TARGET}; with a snapshot, now or in the past, < {SNAPSHOT_TARGET_MS} ms "
        "and flat",
    )
    return met
