"""`make bench-scale`: a national bank's volume, every staff page timed on it.

1,000,000 accounts and 10,000,000 events from `generate_events` (realistic
owners, histories over two years, signed), plus one account of 100,000 events,
in the database `bank_scale` on the configured server. Generating them takes a
while, so the database is kept and reused: a comment on it, written once the
data is complete, says so. A database without that comment (half-written, or
from an older version of this bench) is dropped and written again.

Each run prints, in one run on one machine: raw psycopg's streaming rate over
the log; `rebuild_projections --all` and `verify_projections` over the whole
log, each as a rate beside raw streaming and with its peak memory; every staff
page as server time (Django's test client, DEBUG off as in production, median
of several requests); the audit CSV's rate and memory; and the sizes of the
tables and their indexes.
Targets: every page under 150 ms; rebuild and verify at least 0.5 of raw
streaming, each under 300 MB.

    python -m bench.scale            everything
    python -m bench.scale --pages    the pages and sizes only (the rebuild and verify take half an hour)
"""

import sys
import time
import unicodedata
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from django.core.management import call_command

from bench.figures import report
from bench.pages import REQUESTS, TARGET_MS, as_production, median_ms, resident_mb
from bench.rebuild import RATE_TARGET, timed
from harness.connect import setup_django

DATABASE = "bank_scale"
ACCOUNTS, EVENTS, BUSIEST = 1_000_000, 10_000_000, 100_000
READY = f"bench-scale data v2: {ACCOUNTS} accounts, {EVENTS} events and one of {BUSIEST}, snapshots taken, complete"
MEMORY_TARGET_MB = 300
RAW_STREAMED = 2_000_000  # events raw psycopg streams for its rate
CSV_ROWS = 200_000  # rows of the audit CSV read for its rate
STREAM = (
    "SELECT id, aggregate_id, event_type, event_data, metadata, version, created_at, transaction_id "
    "FROM events ORDER BY transaction_id, id LIMIT %s"
)


def _use_database():
    """Point Django at `bank_scale` (created if missing); its libpq parameters, and whether its data is complete."""
    from django.db import connection

    connection.settings_dict["NAME"] = DATABASE
    with connection._nodb_cursor() as cursor:
        cursor.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", [DATABASE])
        found = cursor.fetchone()
        ready = found is not None and found[0] is not None and found[0].startswith(READY)
        if not ready:  # missing, or left half-written, or written by an older version of this bench
            cursor.execute(f'DROP DATABASE IF EXISTS "{DATABASE}"')
            cursor.execute(f'CREATE DATABASE "{DATABASE}"')
    params = connection.get_connection_params()
    conninfo = {k: params[k] for k in ("dbname", "user", "password", "host", "port") if params.get(k)}
    return conninfo, ready


def _generate(conninfo) -> str:
    """Write the bank (about half an hour here); return what to say of it."""
    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    for args in (["--accounts", ACCOUNTS, "--events", EVENTS, "--chunk", 2000, "--seed", 15],
                 ["--accounts", 1, "--events", BUSIEST, "--seed", 16]):  # fmt: skip
        call_command("generate_events", *map(str, args), stdout=sys.stdout)
    generated = time.perf_counter() - started
    started = time.perf_counter()
    call_command("rebuild_projections", "--all", stdout=sys.stdout)  # the asynchronous read models, from scratch
    rebuilt = time.perf_counter() - started
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        note = f"{READY}; generated in {generated:.0f} s, projections built in {rebuilt:.0f} s"
        conn.execute(f"COMMENT ON DATABASE \"{DATABASE}\" IS '{note}'")
    return note


def _raw_stream(conninfo) -> float:
    """Raw psycopg's rate over the log: a server-side cursor, each row's JSON decoded."""
    started, rows = time.perf_counter(), 0
    with psycopg.connect(**conninfo) as conn, conn.cursor(name="bench_stream") as cursor:
        cursor.itersize = 2_000
        cursor.execute(STREAM, [RAW_STREAMED])
        for _ in cursor:
            rows += 1
    return rows / (time.perf_counter() - started)


def _sizes(conninfo) -> list[tuple[str, float, str]]:
    with psycopg.connect(**conninfo) as conn:
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        rows = conn.execute(
            "SELECT c.relname, pg_table_size(c.oid), pg_indexes_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r' "
            "AND pg_total_relation_size(c.oid) > 10 * 2^20 ORDER BY pg_total_relation_size(c.oid) DESC"
        ).fetchall()
    sizes = [
        (f"{name}: table, indexes", table / 2**20, f"MB, {indexes / 2**20:,.0f} MB") for name, table, indexes in rows
    ]
    total = sum(table + indexes for name, table, indexes in rows if name == "events")
    return [*sizes, ("events stored", events, "events"), ("bytes per event, with its indexes", total / events, "B")]


def _samples(conninfo):
    """The accounts and moments the pages are asked for: found once, not timed."""
    with psycopg.connect(**conninfo) as conn:
        (busiest,) = conn.execute("SELECT account_id FROM account_read_model ORDER BY version DESC LIMIT 1").fetchone()
        (small,) = conn.execute(
            "SELECT account_id FROM account_read_model WHERE version = 10 ORDER BY account_id LIMIT 1"
        ).fetchone()
        middle = conn.execute(
            "SELECT opened_at, account_id FROM account_read_model ORDER BY opened_at DESC, account_id DESC "
            "OFFSET %s LIMIT 1",
            [ACCOUNTS // 2],
        ).fetchone()
        (accented,) = conn.execute(
            "SELECT owner FROM account_read_model WHERE owner ~ '[À-ž]' ORDER BY account_id LIMIT 1"
        ).fetchone()
        (first_id,) = conn.execute("SELECT min(id) FROM events").fetchone()
        (actor,) = conn.execute("SELECT metadata->>'actor' FROM events ORDER BY id DESC LIMIT 1").fetchone()
    word = max(accented.split(), key=lambda w: not w.isascii())  # the accented word, typed without its accents
    plain = "".join(c for c in unicodedata.normalize("NFD", word) if not unicodedata.combining(c))
    return busiest, small, f"{middle[0].isoformat()}_{middle[1]}", plain.lower(), first_id, actor


def _pages(conninfo) -> dict[str, float]:
    from django.contrib.auth.models import User
    from django.test import Client
    from django.urls import reverse

    busiest, small, middle, name, first_id, actor = _samples(conninfo)
    User.objects.filter(username="bench-scale").delete()
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(User.objects.create_superuser("bench-scale", password="bench-only-password"))
    year_ago = (datetime.now(UTC) - timedelta(days=365)).strftime("%Y-%m-%d %H:%M:%S")
    day = (datetime.now(UTC) - timedelta(days=400)).replace(microsecond=0)
    accounts, audit = reverse("accounts:list"), reverse("accounts:audit")

    def page(account_id, **params):
        return median_ms(client, reverse("accounts:detail", args=[account_id]), form=uuid.uuid4(), **params)

    measured = {
        "dashboard": median_ms(client, reverse("accounts:dashboard")),
        f"account search by name, accents ignored ({name!r})": median_ms(client, accounts, q=name),
        "account search by id prefix": median_ms(client, accounts, q=str(small)[:8]),
        "account list, first page": median_ms(client, accounts),
        "account list, deep page (the 500,000th account on)": median_ms(client, accounts, after=middle),
        f"account page, {BUSIEST:,} events": page(busiest),
        f"account page, {BUSIEST:,} events, as of a year ago": page(busiest, as_of=year_ago),
        "account page, 10 events": page(small),
        "account page, 10 events, as of a year ago": page(small, as_of=year_ago),
        "audit log, first page": median_ms(client, audit),
        "audit log, deep page (near the oldest)": median_ms(client, audit, before=first_id + 1_000),
        f"audit log, by account ({BUSIEST:,} events)": median_ms(client, audit, account=str(busiest)),
        "audit log, by account (10 events)": median_ms(client, audit, account=str(small)),
        f"audit log, by actor ({actor})": median_ms(client, audit, actor=actor),
        "audit log, one day a year ago": median_ms(
            client,
            audit,
            since=day.strftime("%Y-%m-%d %H:%M:%S"),
            until=(day + timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S"),
        ),  # fmt: skip
    }
    for model in ("accounts_account", "accounts_approval", "eventstore_event", "eventstore_commandlog",
                  "eventstore_snapshot"):  # fmt: skip
        measured[f"admin list: {model}"] = median_ms(client, reverse(f"admin:{model}_changelist"))
    measured["admin list: accounts_account, search by name"] = median_ms(
        client, reverse("admin:accounts_account_changelist"), q=name
    )
    return measured | _csv(client, reverse("accounts:audit_csv"))


def _csv(client, url) -> dict[str, float]:
    """The first CSV_ROWS rows of the whole log's CSV: its rate and how far resident memory grew."""
    start_mb = top_mb = resident_mb()
    started, lines = time.perf_counter(), 0
    response = client.get(url)
    for n, chunk in enumerate(response.streaming_content):
        lines += chunk.count(b"\n")
        if n % 10_000 == 0:
            top_mb = max(top_mb, resident_mb())
        if lines >= CSV_ROWS:
            break
    seconds = time.perf_counter() - started
    response.close()
    return {"csv rows/s": lines / seconds, "csv MB": max(top_mb, resident_mb()) - start_mb}


def _projections(conninfo) -> bool:
    """rebuild_projections --all and verify_projections over the whole log, beside raw streaming."""
    raw = _raw_stream(conninfo)
    rebuild_s, rebuild_mb = timed(conninfo, "rebuild_projections", "--all")
    verify_s, verify_mb = timed(conninfo, "verify_projections")
    with psycopg.connect(**conninfo) as conn:
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    rebuild_ratio, verify_ratio = events / rebuild_s / raw, events / verify_s / raw
    report(
        f"scale: {events:,} events, read once by each command",
        [
            ("raw psycopg stream + decode", raw, "events/s"),
            ("rebuild_projections --all", events / rebuild_s, f"events/s ({rebuild_s:.0f} s)"),
            ("ratio", rebuild_ratio, "PASS" if rebuild_ratio >= RATE_TARGET else "FAIL"),
            ("rebuild peak memory", rebuild_mb, "MB " + ("PASS" if rebuild_mb < MEMORY_TARGET_MB else "FAIL")),
            ("verify_projections (all)", events / verify_s, f"events/s ({verify_s:.0f} s)"),
            ("ratio", verify_ratio, "PASS" if verify_ratio >= RATE_TARGET else "FAIL"),
            ("verify peak memory", verify_mb, "MB " + ("PASS" if verify_mb < MEMORY_TARGET_MB else "FAIL")),
        ],
        target=f"ratios >= {RATE_TARGET}; memory < {MEMORY_TARGET_MB} MB",
    )
    return min(rebuild_ratio, verify_ratio) >= RATE_TARGET and max(rebuild_mb, verify_mb) < MEMORY_TARGET_MB


def main() -> int:
    setup_django()
    conninfo, ready = _use_database()
    if ready:
        call_command("migrate", verbosity=0)  # a newer schema than the data's
        with psycopg.connect(**conninfo) as conn:
            note = conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                                "WHERE datname = %s", [DATABASE]).fetchone()[0]  # fmt: skip
    else:
        note = _generate(conninfo)
    print(f"\n{note}")
    projections_met = True
    if "--pages" not in sys.argv:
        projections_met = _projections(conninfo)
    with as_production():
        measured = _pages(conninfo)
    csv_rate, csv_mb = measured.pop("csv rows/s"), measured.pop("csv MB")
    report(
        f"scale: pages, median of {REQUESTS} requests, server time",
        [(name, ms, "ms " + ("PASS" if ms < TARGET_MS else "FAIL")) for name, ms in measured.items()]
        + [("audit CSV, rows per second", csv_rate, "rows/s"), ("audit CSV, resident memory growth", csv_mb, "MB")],
        target=f"each page < {TARGET_MS:.0f} ms",
    )
    report("scale: sizes", _sizes(conninfo))
    slow = [name for name, ms in measured.items() if ms >= TARGET_MS]
    return 0 if projections_met and not slow else 1


if __name__ == "__main__":
    sys.exit(main())
