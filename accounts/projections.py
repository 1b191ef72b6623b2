"""The bank's read models, fed by account events.

* `accounts` (inline): one row per account, its state after its latest event,
  written by every command in its own transaction; lists and searches read it.
* `daily_statements` (asynchronous): per account and day, opening balance,
  credits, debits, closing balance and number of events; applied after commit
  by `manage.py run_projections`.

Both fold events in Python from the rows already there, then write each batch
with one statement; both can be rebuilt from the log and verified against it.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime

from django.db import connection
from psycopg import sql

from accounts.domain import AGGREGATE_TYPE, CREDITS, DEBITS, BankAccount
from eventstore import db
from eventstore.projections import Projection, register
from eventstore.store import StoredEvent

_ACCOUNT_UPSERT = """
INSERT INTO {table} AS row
    (account_id, owner, currency, balance, status, version, opened_at, last_activity_at)
VALUES {rows}
ON CONFLICT (account_id) DO UPDATE
   SET owner = EXCLUDED.owner, currency = EXCLUDED.currency, balance = EXCLUDED.balance,
       status = EXCLUDED.status, version = EXCLUDED.version, last_activity_at = EXCLUDED.last_activity_at
 WHERE row.version < EXCLUDED.version
"""


def _by_account(events: list[StoredEvent]) -> dict[uuid.UUID, list[StoredEvent]]:
    grouped: dict[uuid.UUID, list[StoredEvent]] = defaultdict(list)
    for event in events:
        grouped[event.aggregate_id].append(event)
    return grouped


def _fetch(query: sql.Composable, params) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(query.as_string(connection.connection), params)
        return cursor.fetchall()


def _upsert_accounts(table: str, rows: list[tuple], placeholder: str) -> None:
    statement = _ACCOUNT_UPSERT.format(table=f'"{table}"', rows=", ".join([placeholder] * len(rows)))
    db.write(statement, [value for row in rows for value in row])


def record_accounts(accounts: list[BankAccount], moment: datetime) -> None:
    """Inline, from a command: the accounts' states after the events it just appended,
    dated `moment`, the created_at of those events (so that a replay gives the same row)."""
    rows = [(*_state_row(account), moment, moment) for account in accounts]
    _upsert_accounts("account_read_model", rows, "(%s, %s, %s, %s, %s, %s, %s, %s)")


class AccountProjection(Projection):
    name = "accounts"
    tables = ("account_read_model",)
    aggregate_types = frozenset({AGGREGATE_TYPE})
    inline = True
    description = "one row per account: owner, currency, balance, status, version (inline)"

    def apply(self, events, tables):
        table = tables["account_read_model"]
        grouped = _by_account(events)
        existing = {
            row[0]: row
            for row in _fetch(
                sql.SQL(
                    "SELECT account_id, owner, currency, balance, status, version, opened_at FROM {} "
                    "WHERE account_id = ANY(%s)"
                ).format(sql.Identifier(table)),
                [list(grouped)],
            )
        }
        rows = []
        for account_id, account_events in grouped.items():
            known = existing.get(account_id)
            state = BankAccount(*known[:6]) if known else BankAccount(account_id)
            fresh = [e for e in account_events if e.version > state.version]
            if not fresh:
                continue
            after = state.from_events(account_id, [(e.event_type, e.data) for e in fresh], start=state)
            opened_at = known[6] if known else fresh[0].created_at
            rows.append((*_state_row(after), opened_at, fresh[-1].created_at))
        if rows:
            _upsert_accounts(table, rows, "(%s, %s, %s, %s, %s, %s, %s, %s)")


def _state_row(account: BankAccount) -> tuple:
    return (account.id, account.owner, account.currency, account.balance, account.status, account.version)


class DailyStatementProjection(Projection):
    name = "daily_statements"
    tables = ("account_daily_statement",)
    aggregate_types = frozenset({AGGREGATE_TYPE})
    description = "per account and day: opening and closing balance, credits, debits, events (asynchronous)"

    _COLUMNS = "account_id, day, currency, opening_balance, credits, debits, closing_balance, event_count"

    def apply(self, events, tables):
        table = sql.Identifier(tables["account_daily_statement"])
        grouped = _by_account(events)
        latest = {
            row[0]: list(row)
            for row in _fetch(
                sql.SQL(
                    "SELECT DISTINCT ON (account_id) " + self._COLUMNS + " FROM {} "
                    "WHERE account_id = ANY(%s) ORDER BY account_id, day DESC"
                ).format(table),
                [list(grouped)],
            )
        }
        rows = []
        for account_id, account_events in grouped.items():
            current, dirty = latest.get(account_id), False
            for event in account_events:
                # A later version may carry an earlier created_at (its transaction
                # began first and waited for the account): a statement never goes back a day.
                day = max(event.created_at.date(), current[1]) if current else event.created_at.date()
                if current is None or current[1] != day:
                    if dirty:
                        rows.append(current)
                    closing = current[6] if current else 0
                    current = [account_id, day, current[2] if current else "", closing, 0, 0, closing, 0]
                _add(current, event)
                dirty = True
            if dirty:
                rows.append(current)
        if rows:
            statement = sql.SQL(
                "INSERT INTO {} (" + self._COLUMNS + ") VALUES {} ON CONFLICT (account_id, day) DO UPDATE SET "
                "currency = EXCLUDED.currency, opening_balance = EXCLUDED.opening_balance, "
                "credits = EXCLUDED.credits, debits = EXCLUDED.debits, "
                "closing_balance = EXCLUDED.closing_balance, event_count = EXCLUDED.event_count"
            ).format(table, sql.SQL(", ").join([sql.SQL("(%s, %s, %s, %s, %s, %s, %s, %s)")] * len(rows)))
            with connection.cursor() as cursor:
                cursor.execute(statement.as_string(connection.connection), [v for row in rows for v in row])


def _add(row: list, event: StoredEvent) -> None:
    """Fold one event into a statement row: [id, day, currency, opening, credits, debits, closing, count]."""
    data = event.data
    if event.event_type == "Opened":
        row[2] = data["currency"]
        amount = data["initial_balance"]
        row[4] += amount
        row[6] += amount
    elif event.event_type in CREDITS:
        row[4] += data["amount"]
        row[6] += data["amount"]
    elif event.event_type in DEBITS:
        row[5] += data["amount"]
        row[6] -= data["amount"]
    row[7] += 1


accounts = register(AccountProjection())
daily_statements = register(DailyStatementProjection())
