"""The invariants a soak must leave intact, checked by code; each broken one is a violation."""

import io
import time
from collections import Counter, defaultdict
from contextlib import closing

from django.core.management import CommandError, call_command
from django.db import transaction

from accounts import selectors, services
from accounts.domain import AGGREGATE_TYPE, UnreadableEvent, amount, money_effect
from eventstore import projections
from eventstore.store import stream

TRANSFERS = ("TransferSent", "TransferReceived")


class Log:
    """What one pass over the whole log (the store's commit-safe stream) finds for the checks."""

    def __init__(self):
        self.events = 0
        self.accounts: set = set()
        self.external = 0  # money in and out of the bank: openings, deposits, withdrawals
        self.transfers: dict[str, list] = defaultdict(list)  # transfer id -> [(event type, amount)]
        self.causes: dict[str, set] = defaultdict(set)  # idempotency key -> causation ids
        self.per_key: Counter = Counter()  # idempotency key -> events
        self.approved: dict[str, set] = defaultdict(set)  # approval request id -> causation ids of what it ran

    def read(self):
        with transaction.atomic(), closing(stream(horizon=False)) as batches:
            for batch in batches:
                for event in batch:
                    self._add(event)
        return self

    def _add(self, event):
        self.events += 1
        key = event.metadata.get("idempotency_key")
        if key is not None:
            self.causes[key].add(event.metadata.get("causation_id"))
            self.per_key[key] += 1
        if event.aggregate_type != AGGREGATE_TYPE:
            return
        self.accounts.add(event.aggregate_id)
        if "approval_request_id" in event.metadata:
            self.approved[event.metadata["approval_request_id"]].add(event.metadata.get("causation_id"))
        if event.event_type in TRANSFERS:
            self.transfers[event.data["transfer_id"]].append((event.event_type, amount(event.event_type, event.data)))
        else:
            self.external += money_effect(event.event_type, event.data)


def _unpaired(transfers) -> list[str]:
    return [
        transfer_id for transfer_id, legs in transfers.items()
        if sorted(kind for kind, _ in legs) != sorted(TRANSFERS) or len({moved for _, moved in legs}) != 1
    ]  # fmt: skip


def _caught_up(timeout: float = 60) -> None:
    """Apply every event to the asynchronous projections. A runner reads only transactions older than
    every running one on the server, so another database's long transaction can hold it back a while."""
    deadline = time.monotonic() + timeout
    while True:
        for projection in projections.asynchronous():
            while projections.catch_up(projection):
                pass
        if not selectors.bank_figures().behind or time.monotonic() > deadline:
            return
        time.sleep(0.2)


def check(totals, outcomes) -> int:
    findings, checked = [], 0

    def invariant(name, problems):
        nonlocal checked
        checked += 1
        findings.extend(f"{name}: {problem}" for problem in problems)

    # A run that did nothing would pass every other check: it proves nothing.
    attempted, succeeded = totals.get("attempted", 0), totals.get("succeeded", 0)
    invariant("commands were attempted and some succeeded", [] if succeeded else [
        f"{attempted:,} commands attempted, none succeeded" if attempted else "no command was attempted"
    ])  # fmt: skip

    try:
        call_command("verify_event_store", stdout=io.StringIO())
        invariant("versions 1..N, guards, global order", [])
    except CommandError as error:
        invariant("versions 1..N, guards, global order", [str(error)])

    _caught_up()
    for projection in projections.registry.values():
        invariant(f"read model {projection.name} equals replay", projections.verify(projection, limit=20))

    log = Log().read()
    balances, unreadable = {}, []
    for account_id in log.accounts:
        try:
            balances[account_id] = services.get_account(account_id).balance
        except UnreadableEvent as problem:  # a balance below zero, say: the fold refuses it
            unreadable.append(problem.description)
    invariant("every account replays", unreadable)
    total = sum(balances.values())
    invariant("money is conserved", [] if total == log.external else [f"balances {total} != {log.external}"])
    shown = sum(figure.balance for figure in selectors.bank_figures().currencies)
    invariant("the dashboard's totals hold every balance", [] if shown == total else [f"{shown} != {total}"])
    invariant("transfers net to zero", _unpaired(log.transfers))
    invariant("no balance below zero", [f"{a}: {b}" for a, b in balances.items() if b < 0])
    invariant(
        "an idempotency key stored at most one command", [key for key, causes in log.causes.items() if len(causes) > 1]
    )

    invariant("an approved request ran once", [request for request, causes in log.approved.items() if len(causes) > 1])

    stored = log.per_key
    invariant("every command seen to succeed is in the log, once", [
        f"{name} {key}: {stored.get(key, 0)} events, expected {events}"
        for key, (name, outcome, events) in outcomes.items() if outcome == "done" and stored.get(key, 0) != events
    ])  # fmt: skip
    invariant("no command seen refused is in the log", [
        f"{name} {key}" for key, (name, outcome, _) in outcomes.items() if outcome == "refused" and stored.get(key)
    ])  # fmt: skip

    width = max(len(name) for name in totals) if totals else 10
    print("\nsoak figures")
    for name in ("attempted", "succeeded", "sent for approval", "refused by rules", "retried after conflicts",
                 "retried after a lost connection or cancelled statement", "connections killed",
                 "statements cancelled", "long transactions held"):  # fmt: skip
        print(f"  {name:<{width}}  {totals.get(name, 0):>10,}")
    print(f"  {'events in the log':<{width}}  {log.events:>10,}")
    print(f"  {'invariants checked':<{width}}  {checked:>10,}")
    print(f"  {'violations':<{width}}  {len(findings):>10,}")
    for finding in findings[:50]:
        print(f"  VIOLATION {finding}")
    return len(findings)
