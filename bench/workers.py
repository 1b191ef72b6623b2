"""The command cycle from 8 processes at once, each on its own account.

Eight worker processes call services.deposit against eight raw psycopg
processes running the load-and-insert loop of bench/commands.py, on the same
database in the same run. Nothing is shared between accounts (no global write
lock anywhere), so the services should scale as raw psycopg does. Target:
aggregate throughput at least 0.8 of raw.

Sixteen processes on two cores make any one round noisy, so both groups are
started once and run many short rounds, alternating. Each round is on fresh
accounts, opened before the first (so raw psycopg never pays for a long history),
and a group waits at its barrier while the other runs, using no CPU.
"""

import multiprocessing
import statistics
import time
import uuid

from bench.figures import rate, report
from harness.connect import setup_django

PROCESSES = 8
PER_PROCESS = 120
ROUNDS = 11
TARGET = 0.8


def _raw_worker(conninfo, ready, results):
    import psycopg

    from bench.commands import raw_deposit, raw_open

    with psycopg.connect(**conninfo, autocommit=True) as conn:
        for account_id in [raw_open(conn) for _ in range(ROUNDS)]:
            ready.wait()
            started = time.perf_counter()
            for _ in range(PER_PROCESS):
                raw_deposit(conn, account_id, 100)
            results.put(time.perf_counter() - started)


def _services_worker(conninfo, ready, results):
    setup_django(conninfo)
    from accounts import services

    for account in [services.open_account(owner="Bench", initial_deposit=0) for _ in range(ROUNDS)]:
        ready.wait()
        started = time.perf_counter()
        for _ in range(PER_PROCESS):
            services.deposit(account_id=account.id, amount=100, source="bench", idempotency_key=str(uuid.uuid4()))
        results.put(time.perf_counter() - started)


class _Group:
    """PROCESSES workers of one kind, released together once per round."""

    def __init__(self, context, target, conninfo):
        self.ready, self.results = context.Barrier(PROCESSES + 1), context.Queue()
        self.workers = [
            context.Process(target=target, args=(conninfo, self.ready, self.results)) for _ in range(PROCESSES)
        ]
        for worker in self.workers:
            worker.start()

    def round(self) -> float:
        """Release the workers; return the slowest one's seconds (the group's time for the round)."""
        self.ready.wait(timeout=120)
        return max(self.results.get(timeout=300) for _ in self.workers)

    def join(self):
        for worker in self.workers:
            worker.join()
            if worker.exitcode != 0:
                raise RuntimeError(f"a benchmark worker failed with exit code {worker.exitcode}")


def run(conninfo) -> bool:
    context = multiprocessing.get_context("spawn")
    groups = {"raw": _Group(context, _raw_worker, conninfo), "services": _Group(context, _services_worker, conninfo)}
    timings = {name: [] for name in groups}
    order = list(groups)
    for _ in range(ROUNDS):
        order.reverse()
        for name in order:
            timings[name].append(groups[name].round())
    for group in groups.values():
        group.join()
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
