"""Rebuilding the account read model from 1,000,000 events, verifying the log, and the runner's lag.

The log is written by `generate_events` (valid histories, COPY). Raw psycopg
streams the same rows through a server-side cursor and decodes their JSON, in
the same run; `rebuild_projections accounts` runs as a child process, whose
peak memory is read from the operating system. Targets: rebuild at least 0.5
of the raw rate; peak memory under 300 MB. `verify_event_store` (every link, MAC,
replay and check, as a child process too) at least 0.3 of the raw rate, and it
must find nothing in what generate_events signed.

Then the runner: once caught up with the million events, `run_projections` in a
child process while deposits arrive at a steady rate; the lag of each is the
time from its commit until the statement projection's checkpoint has passed
it. Target: under one second at the median.
"""

import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg

from bench.figures import report
from harness.connect import database_url

EVENTS, ACCOUNTS = 1_000_000, 10_000
RATE_TARGET, VERIFY_TARGET, MEMORY_TARGET_MB, LAG_TARGET_S = 0.5, 0.3, 300, 1.0
LAG_SECONDS, LAG_PER_SECOND = 10, 40
ROOT = Path(__file__).resolve().parents[1]
STREAM = (
    "SELECT id, aggregate_id, event_type, event_data, metadata, version, created_at, transaction_id "
    "FROM events ORDER BY transaction_id, id"
)


def _manage(conninfo, *args, **kwargs):
    env = {**os.environ, "DATABASE_URL": database_url(conninfo)}
    return subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, env=env, **kwargs)


def _raw_stream(conninfo) -> tuple[int, float]:
    started, rows = time.perf_counter(), 0
    with psycopg.connect(**conninfo) as conn, conn.cursor(name="bench_stream") as cursor:
        cursor.itersize = 2_000
        cursor.execute(STREAM)
        for _ in cursor:  # psycopg decodes each row's jsonb into Python objects
            rows += 1
    return rows, time.perf_counter() - started


def timed(conninfo, *command) -> tuple[float, float]:
    """Run a management command as a child process: its seconds, and its own peak memory in MB."""
    started = time.perf_counter()
    child = _manage(conninfo, *command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"{command[0]} failed (exit {child.returncode})")
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def _lag(conninfo) -> list[float]:
    from accounts import services
    from eventstore.store import EventStore

    runner = _manage(conninfo, "run_projections", "--poll", "0.5", stdout=subprocess.DEVNULL)
    account = services.open_account(owner="Lag", initial_deposit=0)
    time.sleep(3)  # let the runner start
    pending, lags, done = {}, [], threading.Event()

    def watch():
        with psycopg.connect(**conninfo, autocommit=True) as conn:
            while not done.is_set() or pending:
                position = conn.execute(
                    "SELECT transaction_id, event_id FROM projection_checkpoints WHERE name = 'daily_statements'"
                ).fetchone()
                now = time.perf_counter()
                for key, committed in list(pending.items()):
                    if position and tuple(position) >= key:
                        lags.append(now - committed)
                        del pending[key]
                time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    store = EventStore()
    for _ in range(LAG_SECONDS * LAG_PER_SECOND):
        after = services.deposit(account_id=account.id, amount=1, source="lag")
        event = store.load(account.id, after_version=after.version - 1)[0]
        pending[(event.transaction_id, event.id)] = time.perf_counter()
        time.sleep(1 / LAG_PER_SECOND)
    done.set()
    watcher.join(timeout=60)
    runner.terminate()
    runner.wait(timeout=30)
    return lags


def run(conninfo) -> bool:
    started = time.perf_counter()
    filled = _manage(conninfo, "generate_events", "--accounts", str(ACCOUNTS), "--events", str(EVENTS),
                     "--seed", "1", stdout=subprocess.DEVNULL)  # fmt: skip
    if filled.wait() != 0:
        raise RuntimeError("generate_events failed")
    fill_seconds = time.perf_counter() - started
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        conn.execute("ANALYZE")
    rows, raw_seconds = _raw_stream(conninfo)
    rebuild_seconds, peak_mb = timed(conninfo, "rebuild_projections", "accounts")
    verify_seconds, verify_mb = timed(conninfo, "verify_event_store")
    raw_rate, rebuild_rate, verify_rate = rows / raw_seconds, rows / rebuild_seconds, rows / verify_seconds
    started = time.perf_counter()
    if _manage(conninfo, "run_projections", "--once", stdout=subprocess.DEVNULL).wait() != 0:
        raise RuntimeError("run_projections --once failed")
    statements_rate = rows / (time.perf_counter() - started)
    ratio, verify_ratio = rebuild_rate / raw_rate, verify_rate / raw_rate
    lags = _lag(conninfo)
    median_lag = statistics.median(lags) if lags else float("inf")
    met = ratio >= RATE_TARGET and peak_mb < MEMORY_TARGET_MB and median_lag < LAG_TARGET_S
    met &= verify_ratio >= VERIFY_TARGET and verify_mb < MEMORY_TARGET_MB
    report(
        f"projections: {rows:,} events (generated in {fill_seconds:.0f} s)",
        [
            ("raw psycopg stream + decode", raw_rate, "events/s"),
            ("rebuild_projections accounts", rebuild_rate, "events/s (whole command)"),
            ("ratio", ratio, "PASS" if ratio >= RATE_TARGET else "FAIL"),
            ("daily statements caught up from scratch", statements_rate, "events/s (whole command)"),
            ("rebuild peak memory", peak_mb, "MB " + ("PASS" if peak_mb < MEMORY_TARGET_MB else "FAIL")),
            ("verify_event_store, every check", verify_rate, "events/s (whole command)"),
            ("verify ratio", verify_ratio, "PASS" if verify_ratio >= VERIFY_TARGET else "FAIL"),
            ("verify peak memory", verify_mb, "MB " + ("PASS" if verify_mb < MEMORY_TARGET_MB else "FAIL")),
            (
                f"runner lag, median of {len(lags)} deposits",
                median_lag,
                "s " + ("PASS" if median_lag < LAG_TARGET_S else "FAIL"),
            ),
            ("runner lag, 95th percentile", statistics.quantiles(lags, n=20)[-1] if len(lags) > 1 else 0, "s"),
        ],
        target=f"ratio >= {RATE_TARGET}, verify >= {VERIFY_TARGET}; memory < {MEMORY_TARGET_MB} MB; "
        f"median lag < {LAG_TARGET_S} s",
    )
    return met
