"""The soak's processes: workers, chaos, and the final checks."""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
import uuid
from collections import Counter

import psycopg

from harness.connect import setup_django
from harness.database import scratch_database

SOAK_DATABASE = "bank_soak"
READY_TIMEOUT = 120  # seconds for every spawned process to start; past it, one has surely died


def soak(options) -> int:
    with scratch_database(SOAK_DATABASE) as conninfo:
        from django.db import connections

        from accounts import services

        accounts = [str(services.open_account(owner=f"Soak {n}", initial_deposit=1_000_000).id)
                    for n in range(options.accounts)]  # fmt: skip
        connections.close_all()  # the chaos would kill it; the checks open a new one afterwards
        context = multiprocessing.get_context("spawn")
        results, stop = context.Queue(), context.Event()
        # Spawned processes take seconds to import Django: a clock started with them could run out
        # before the first command. It starts when every one of them, and we, reach this barrier.
        ready = context.Barrier(options.workers + 2)
        seed = options.seed if options.seed is not None else random.randrange(10**9)
        workers = [
            context.Process(target=_worker, args=(conninfo, accounts, options.hot, seed + n, ready, stop, results))
            for n in range(options.workers)
        ]
        chaos = context.Process(target=_chaos, args=(conninfo, seed, ready, stop, results))
        for process in [*workers, chaos]:
            process.start()
        try:
            ready.wait(timeout=READY_TIMEOUT)
        except threading.BrokenBarrierError:
            for process in [*workers, chaos]:
                process.terminate()
                process.join(timeout=60)
            raise SystemExit(f"soak: the workers and chaos were not all ready within {READY_TIMEOUT} s") from None
        time.sleep(options.seconds)
        stop.set()
        totals, outcomes = Counter(), {}
        for _ in range(options.workers + 1):
            counts, seen = results.get(timeout=600)
            totals.update(counts)
            outcomes.update(seen)
        for process in [*workers, chaos]:
            process.join(timeout=60)
        from soak.checks import check

        return check(totals, outcomes)


def _worker(conninfo, accounts, hot, seed, ready, stop, results):
    """Random commands until told to stop; reports counts and each key's definite outcome."""
    setup_django(conninfo)
    from django.db import DatabaseError, connections

    from accounts import services
    from accounts.approvals import APPROVED, ApprovalPending
    from accounts.domain import DomainError
    from eventstore.context import metadata_context
    from eventstore.store import ConcurrencyConflict

    rng, counts, outcomes = random.Random(seed), Counter(), {}
    ready.wait()

    def pick():
        return rng.choice(accounts[:hot]) if rng.random() < 0.5 else rng.choice(accounts[hot:])

    def until_answered(name, call, key, events):
        """Run the call until it has a definite answer; the request it stored, if it waits for approval."""
        while True:
            try:
                done = call(key)
                if name == "approve":  # the request's event, and the account events if it ran
                    events = 1 + (events if done.state == APPROVED else 0)
                outcomes[key] = (name, "done", events)
                counts["succeeded"] += 1
                return None
            except ApprovalPending as pending:
                outcomes[key] = (name, "done", 1)  # the request's first event, and nothing else yet
                counts["sent for approval"] += 1
                return pending.request
            except DomainError:
                outcomes.setdefault(key, (name, "refused", 0))
                counts["refused by rules"] += 1
                return None
            except ConcurrencyConflict:
                counts["retried after conflicts"] += 1
            except DatabaseError:
                counts["retried after a lost connection or cancelled statement"] += 1
                connections.close_all()
                time.sleep(0.05)

    while not stop.is_set():
        name, call, events = _command(rng, services, pick)
        key = str(uuid.uuid4())
        repeats = 2 if rng.random() < 0.1 else 1  # a double submit
        for _ in range(repeats):
            counts["attempted"] += 1
            request = until_answered(name, call, key, events)
        if request is not None and rng.random() < 0.7:  # a second person approves most of them
            counts["attempted"] += 1
            with metadata_context(actor="soak-checker"):
                until_answered("approve", lambda k, r=request.id: services.approve(request_id=r, idempotency_key=k),
                               str(uuid.uuid4()), events)  # fmt: skip
    connections.close_all()
    results.put((counts, outcomes))


def _command(rng, services, pick):
    amount = rng.choice([1, 50, 1_000, 20_000, 2_000_000])  # the last is more than any account holds
    account, other = pick(), pick()
    roll = rng.random()
    if roll < 0.3:
        return (
            "deposit",
            lambda k: services.deposit(account_id=account, amount=amount, source="soak", idempotency_key=k),
            1,
        )
    if roll < 0.55:
        return (
            "withdraw",
            lambda k: services.withdraw(account_id=account, amount=amount, reason="soak", idempotency_key=k),
            1,
        )
    if roll < 0.9:
        return (
            "transfer",
            lambda k: services.transfer(
                from_account_id=account, to_account_id=other, amount=amount, reference="soak", idempotency_key=k
            ),
            2,
        )
    if roll < 0.92:
        return "freeze", lambda k: services.freeze(account_id=account, reason="soak", idempotency_key=k), 1
    if roll < 0.985:
        return "unfreeze", lambda k: services.unfreeze(account_id=account, reason="soak", idempotency_key=k), 1
    if roll < 0.995:
        return (
            "open_account",
            lambda k: services.open_account(owner="Soak late", initial_deposit=amount, idempotency_key=k),
            1,
        )
    return "close_account", lambda k: services.close_account(account_id=account, reason="soak", idempotency_key=k), 1


def _chaos(conninfo, seed, ready, stop, results):
    """Kill connections, cancel statements, hold transactions open, at random."""
    rng, counts = random.Random(seed ^ 0xC4A05), Counter()
    with psycopg.connect(**conninfo, autocommit=True) as admin:
        own = admin.execute("SELECT pg_backend_pid()").fetchone()[0]
        ready.wait()
        while not stop.is_set():
            time.sleep(rng.uniform(0.05, 0.4))
            victims = [pid for (pid,) in admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> %s "
                "AND backend_type = 'client backend'", [own])]  # fmt: skip
            if not victims:
                continue
            roll = rng.random()
            if roll < 0.4:
                admin.execute("SELECT pg_terminate_backend(%s)", [rng.choice(victims)])
                counts["connections killed"] += 1
            elif roll < 0.8:
                admin.execute("SELECT pg_cancel_backend(%s)", [rng.choice(victims)])
                counts["statements cancelled"] += 1
            else:
                with psycopg.connect(**conninfo) as holder:
                    holder.execute("SELECT pg_current_xact_id()")  # an open transaction with an xid
                    time.sleep(rng.uniform(0.5, 2))
                counts["long transactions held"] += 1
    results.put((counts, {}))
