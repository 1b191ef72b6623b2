"""Shared set-up for benchmarks: a throw-away database on the configured server.

Every figure is a ratio against raw psycopg measured on the same database in the
same run, because absolute times on shared machines drift. Rounds alternate
between the two sides so that drift hits both alike.
"""

import os
import statistics
import time
from contextlib import contextmanager

import django

BENCH_DATABASE = "bank_bench"


@contextmanager
def bench_database(name: str = BENCH_DATABASE):
    """Create a fresh, migrated database `name`, yield libpq connection kwargs, drop it."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.conf import settings
    from django.db import connection

    settings.DEBUG = False  # as in production: no query log kept in memory

    connection.settings_dict["TEST"]["NAME"] = name
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        params = connection.get_connection_params()
        yield {k: params[k] for k in ("dbname", "user", "password", "host", "port") if params.get(k)}
    finally:
        connection.close()
        with connection._nodb_cursor() as cursor:  # a benchmark that failed may leave sessions behind
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [name],
            )
        connection.creation.destroy_test_db(old_name, verbosity=0)


def rate(operations: int, seconds: float) -> float:
    return operations / seconds if seconds > 0 else float("inf")


def alternate(rounds: int, **sides):
    """Run each side's callable once per round; return median seconds per side.

    The order flips every round so that neither side always runs right after the
    other (checkpoints and fsync bursts would otherwise land on one side).
    """
    timings = {name: [] for name in sides}
    order = list(sides.items())
    for _ in range(rounds):
        order.reverse()
        for name, run in order:
            started = time.perf_counter()
            run()
            timings[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in timings.items()}


def report(title: str, rows, target: str = ""):
    """Print a small aligned table: rows of (label, value, unit)."""
    print(f"\n{title}")
    width = max(len(label) for label, _, _ in rows)
    for label, value, unit in rows:
        print(f"  {label:<{width}}  {value:>12,.2f} {unit}")
    if target:
        print(f"  target: {target}")
