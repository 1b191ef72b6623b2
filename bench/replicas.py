"""`python -m bench.replicas`: how far a streaming replica trails the primary, what reading from one
costs a page, and how long a standby runner takes over from a killed one.

On a primary and a streaming replica of its own (harness.replication), on this host:

* Replica lag: after each deposit (services.deposit, on the primary), how long until the replica
  has replayed the primary's position, measured by WAL position. Alone, then while two more
  connections deposit without pause.
* A page's cost: eventstore.replicas.choose() (the primary's position and the replica's), against
  raw psycopg's SELECT 1 on each; and read-your-writes, how long a page right after a command
  waits for the replica.
* Runner handover: `kill -9` of the active run_projections, until the waiting one logs that it
  runs the projections.

No target: figures for the operator's note. Absolute times drift on shared machines.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg

from harness.replication import primary_and_replica

ROOT = Path(__file__).resolve().parents[1]
DEPOSITS = 500
CHOICES = 1000


def manage(url: str, *args: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": url, "LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, env=env, text=True, **popen)


def prepare(url: str) -> None:
    assert manage(url, "migrate", "--noinput", "--verbosity", "0").wait() == 0


def milliseconds(samples: list[float]) -> str:
    ordered = [sample * 1000 for sample in sorted(samples)]
    p95 = ordered[int(len(ordered) * 0.95)]
    return f"median {statistics.median(ordered):.2f} ms, p95 {p95:.2f} ms, max {ordered[-1]:.2f} ms"


def lags(count: int) -> list[float]:
    from accounts import services
    from eventstore import replicas

    account = services.open_account(owner="Lag", initial_deposit=0)
    found = []
    for _ in range(count):
        services.deposit(account_id=account.id, amount=100, source="bench")
        target, started = replicas.primary_position(), time.perf_counter()
        while (replicas.replayed("replica_1") or 0) < target:
            pass
        found.append(time.perf_counter() - started)
    return found


def under_load(count: int) -> list[float]:
    from django.db import connections

    from accounts import services

    done = threading.Event()

    def deposit_without_pause() -> None:
        account = services.open_account(owner="Load", initial_deposit=0)
        while not done.is_set():
            services.deposit(account_id=account.id, amount=1, source="bench")
        connections.close_all()

    loaders = [threading.Thread(target=deposit_without_pause) for _ in range(2)]
    for loader in loaders:
        loader.start()
    try:
        return lags(count)
    finally:
        done.set()
        for loader in loaders:
            loader.join()


def choosing(cluster) -> tuple[float, float, list[float]]:
    """Microseconds per choose(), per raw SELECT 1 on the primary and the replica; read-your-writes waits."""
    from accounts import services
    from eventstore import replicas

    started = time.perf_counter()
    for _ in range(CHOICES):
        assert replicas.choose().alias == "replica_1"
    chosen = (time.perf_counter() - started) / CHOICES
    with psycopg.connect(cluster.primary.url()) as primary, psycopg.connect(cluster.replica.url()) as replica:
        started = time.perf_counter()
        for _ in range(CHOICES):
            primary.execute("SELECT 1").fetchone()
            replica.execute("SELECT 1").fetchone()
        raw = (time.perf_counter() - started) / CHOICES
    account = services.open_account(owner="Reader", initial_deposit=0)
    waits = []
    for _ in range(200):
        services.deposit(account_id=account.id, amount=1, source="bench")
        after, started = replicas.primary_position(), time.perf_counter()
        assert replicas.choose(after=after).alias == "replica_1"
        waits.append(time.perf_counter() - started)
    return chosen * 1e6, raw * 1e6, waits


def handover(url: str) -> float:
    """Seconds from kill -9 of the active runner until the standby says it runs daily_statements."""
    first = manage(url, "run_projections", "--poll", "0.2", stderr=subprocess.PIPE)
    second = None
    try:
        _wait_for(first, "running daily_statements")
        second = manage(url, "run_projections", "--poll", "0.2", stderr=subprocess.PIPE)
        _wait_for(second, "waiting: another runner holds daily_statements")
        killed = time.perf_counter()
        first.send_signal(signal.SIGKILL)
        _wait_for(second, "running daily_statements")
        return time.perf_counter() - killed
    finally:
        for runner in (first, second):
            if runner is not None:
                runner.kill()
                runner.wait()


def _wait_for(process: subprocess.Popen, text: str, timeout: float = 60) -> None:
    assert process.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        try:
            message = json.loads(line).get("message", "")
        except ValueError:
            continue
        if text in message:
            return
    raise TimeoutError(f"{text!r} never logged")


def main() -> int:
    with primary_and_replica(prepare) as cluster:
        os.environ |= {"DATABASE_URL": cluster.primary.url(), "REPLICA_DATABASE_URLS": cluster.replica.url()}
        from harness.connect import setup_django

        setup_django()
        from eventstore.context import metadata_context

        with metadata_context(actor="bench", correlation_id=str(uuid.uuid4())):
            alone = lags(DEPOSITS)
            loaded = under_load(DEPOSITS)
            chosen, raw, waits = choosing(cluster)
        took = [handover(cluster.primary.url()) for _ in range(3)]
    print(f"replica lag after a deposit, alone ({DEPOSITS}): {milliseconds(alone)}")
    print(f"replica lag after a deposit, two more connections depositing ({DEPOSITS}): {milliseconds(loaded)}")
    print(f"choosing a replica for a page: {chosen:.0f} us; raw psycopg SELECT 1 on primary and replica: {raw:.0f} us "
          f"(ratio {raw / chosen:.2f})")  # fmt: skip
    print(f"read-your-writes, a page right after a deposit waits: {milliseconds(waits)}")
    print(f"runner handover after kill -9 (3 times): {', '.join(f'{seconds:.2f} s' for seconds in took)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
