"""The command cycle from 8 processes at once, each on its own account.

Eight worker processes call services.deposit against eight raw psycopg
processes running the load-and-insert loop of bench/commands.py, on the same
database in the same run. Nothing is shared between accounts (no global write
lock anywhere), so the services should scale as raw psycopg does. Target:
aggregate throughput at least 0.6 of raw.
"""

import multiprocessing
import statistics
import time
import uuid

from bench.figures import rate, report
from harness.connect import setup_django

PROCESSES = 8
PER_PROCESS = 120
ROUNDS = 3
TARGET = 0.8


def _raw_worker(conninfo, ready, results):
    import psycopg

    from bench.commands import raw_deposit, raw_open

    with psycopg.connect(**conninfo, autocommit=True) as conn:
        account_id = raw_open(conn)
        ready.wait()
        started = time.perf_counter()
        for _ in range(PER_PROCESS):
            raw_deposit(conn, account_id, 100)
        results.put(time.perf_counter() - started)


def _services_worker(conninfo, ready, results):
    setup_django(conninfo)
    from accounts import services

    account = services.open_account(owner="Bench", initial_deposit=0)
    ready.wait()
    started = time.perf_counter()
    for _ in range(PER_PROCESS):
        services.deposit(account_id=account.id, amount=100, source="bench", idempotency_key=str(uuid.uuid4()))
    results.put(time.perf_counter() - started)


def _group(target, conninfo) -> float:
    """Run PROCESSES workers released together; return the slowest one's seconds."""
    context = multiprocessing.get_context("spawn")
    ready, results = context.Barrier(PROCESSES + 1), context.Queue()
    workers = [context.Process(target=target, args=(conninfo, ready, results)) for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    ready.wait(timeout=120)
    seconds = [results.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join()
        if worker.exitcode != 0:
            raise RuntimeError(f"a benchmark worker failed with exit code {worker.exitcode}")
    return max(seconds)


def run(conninfo) -> bool:
    timings = {"raw": [], "services": []}
    for round_number in range(ROUNDS):
        order = [("raw", _raw_worker), ("services", _services_worker)]
        for name, target in order if round_number % 2 == 0 else reversed(order):
            timings[name].append(_group(target, conninfo))
    total = PROCESSES * PER_PROCESS
    raw_rate = rate(total, statistics.median(timings["raw"]))
    services_rate = rate(total, statistics.median(timings["services"]))
    ratio = services_rate / raw_rate
    report(
        f"command cycle, {PROCESSES} processes on {PROCESSES} accounts ({ROUNDS} rounds x {PER_PROCESS} each, median)",
        [
            ("raw psycopg load + insert", raw_rate, "deposits/s"),
            ("services.deposit", services_rate, "deposits/s"),
            ("ratio", ratio, "PASS" if ratio >= TARGET else "FAIL"),
        ],
        target=f"ratio >= {TARGET}",
    )
    return ratio >= TARGET
