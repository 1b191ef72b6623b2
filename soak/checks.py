"""The invariants a soak must leave intact, checked by code; each broken one is a violation."""

import io

from django.core.management import CommandError, call_command
from django.db import connection

from accounts import services
from eventstore import projections

MONEY = """
SELECT coalesce(sum((event_data->>'initial_balance')::bigint) FILTER (WHERE event_type = 'Opened'), 0),
       coalesce(sum((event_data->>'amount')::bigint) FILTER (WHERE event_type = 'Deposited'), 0),
       coalesce(sum((event_data->>'amount')::bigint) FILTER (WHERE event_type = 'Withdrawn'), 0)
  FROM events WHERE aggregate_type = 'BankAccount'
"""
UNPAIRED_TRANSFERS = """
SELECT event_data->>'transfer_id' FROM events WHERE event_type IN ('TransferSent', 'TransferReceived')
 GROUP BY 1 HAVING count(*) <> 2 OR count(DISTINCT event_type) <> 2 OR count(DISTINCT event_data->>'amount') <> 1
"""
KEY_USED_TWICE = """
SELECT metadata->>'idempotency_key' FROM events WHERE metadata->>'idempotency_key' IS NOT NULL
 GROUP BY 1 HAVING count(DISTINCT metadata->>'causation_id') > 1
"""
EVENTS_PER_KEY = """
SELECT metadata->>'idempotency_key', count(*) FROM events
 WHERE metadata->>'idempotency_key' = ANY(%s) GROUP BY 1
"""


def _query(sql, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


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

    while projections.catch_up(projections.registry["daily_statements"]):
        pass
    for projection in projections.registry.values():
        invariant(f"read model {projection.name} equals replay", projections.verify(projection, limit=20))

    account_ids = [row[0] for row in _query("SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = 'BankAccount'")]
    balances = {account_id: services.get_account(account_id).balance for account_id in account_ids}
    opened, deposited, withdrawn = _query(MONEY)[0]
    expected = opened + deposited - withdrawn
    invariant("money is conserved", [] if sum(balances.values()) == expected else [f"balances {sum(balances.values())} != {expected}"])
    invariant("transfers net to zero", _query(UNPAIRED_TRANSFERS))
    invariant("no balance below zero", [f"{a}: {b}" for a, b in balances.items() if b < 0])
    invariant("an idempotency key stored at most one command", _query(KEY_USED_TWICE))

    stored = dict(_query(EVENTS_PER_KEY, [list(outcomes)]))
    invariant("every command seen to succeed is in the log, once", [
        f"{name} {key}: {stored.get(key, 0)} events, expected {events}"
        for key, (name, outcome, events) in outcomes.items() if outcome == "done" and stored.get(key, 0) != events
    ])  # fmt: skip
    invariant("no command seen refused is in the log", [
        f"{name} {key}" for key, (name, outcome, _) in outcomes.items() if outcome == "refused" and stored.get(key)
    ])  # fmt: skip

    width = max(len(name) for name in totals) if totals else 10
    print("\nsoak figures")
    for name in ("attempted", "succeeded", "refused by rules", "retried after conflicts",
                 "retried after a lost connection or cancelled statement", "connections killed",
                 "statements cancelled", "long transactions held"):  # fmt: skip
        print(f"  {name:<{width}}  {totals.get(name, 0):>10,}")
    print(f"  {'events in the log':<{width}}  {sum(n for _, n in _query('SELECT 1, count(*) FROM events')):>10,}")
    print(f"  {'invariants checked':<{width}}  {checked:>10,}")
    print(f"  {'violations':<{width}}  {len(findings):>10,}")
    for finding in findings[:50]:
        print(f"  VIOLATION {finding}")
    return len(findings)
