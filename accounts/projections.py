"""The bank's read models, fed by account and approval-request events.

* `accounts` (inline): one row per account, its state after its latest event;
  lists and searches read it. The command unit applies it to every command's
  events in the command's own transaction.
* `approvals` (inline): one row per approval request, for the approvals queue
  and the account pages.
* `daily_statements` (asynchronous): per account and day, opening balance,
  credits, debits, closing balance and number of events; applied after commit
  by `manage.py run_projections`.
* `bank_totals` (asynchronous): accounts and money per currency and status, for
  the dashboard, with what it knows of each account to move it between totals.

Each has one `apply`, which commands, catch-up, rebuild and verify all run, and
each reads payloads through the domain's helpers (amount, money_effect, status_after).
"""

from __future__ import annotations

import functools
import json
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import orjson
from psycopg import sql

from accounts.approvals import PENDING, REQUEST_TYPE, ApprovalRequest
from accounts.domain import ACTIVE, AGGREGATE_TYPE, BankAccount, money_effect, status_after
from eventstore import db
from eventstore.projections import Projection, register
from eventstore.store import RecordedEvent, StoredEvent

EventRecord = RecordedEvent | StoredEvent


def _by_aggregate(events: Sequence[EventRecord]) -> dict[uuid.UUID, list[EventRecord]]:
    grouped: dict[uuid.UUID, list[EventRecord]] = defaultdict(list)
    for event in events:
        grouped[event.aggregate_id].append(event)
    return grouped


@functools.lru_cache(maxsize=256)
def _statement(template: str, table: str, rows: str = "") -> str:
    """`template` for `table` (and the rows' table expression), composed once."""
    composed = sql.SQL(template).format(table=sql.Identifier(table), rows=sql.SQL(rows))
    return composed.as_string(db.wrapper().connection)


_FEW = 8  # rows a command writes (one or two accounts); a rebuild's batch writes thousands


def _write(template: str, table: str, types: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """Write `rows` with `template`, whose {rows} is a table expression of the rows, columns of `types`.

    A command's row or two go as a VALUES list. A batch goes as one JSON array of rows, which
    orjson writes in C and the server takes apart: a rebuild is bound by its one Python thread,
    and psycopg spends several times longer on the same rows as arrays or a VALUES list.
    """
    if len(rows) <= _FEW:
        row = "(" + ", ".join(f"%s::{kind}" for kind in types) + ")"
        expression = "(VALUES " + ", ".join([row] * len(rows)) + ")"
        db.write(_statement(template, table, expression), [value for row in rows for value in row])
    else:
        columns = ", ".join(f"(row->>{n})::{kind}" for n, kind in enumerate(types))
        expression = f"(SELECT {columns} FROM jsonb_array_elements(%s::jsonb) AS row)"
        db.write(_statement(template, table, expression), [_json(rows)])


def _json(rows: list[tuple[Any, ...]]) -> str:
    """`rows` as JSON; Decimals (sums read back) and integers past 64 bits as the standard library writes them."""
    try:
        return orjson.dumps(rows, default=str).decode()
    except TypeError:  # an integer past 64 bits
        return json.dumps(rows, default=str)


# An account's first events make its row; later ones change it by what they did,
# so applying them needs no read: a command's writes all go out with its COMMIT.
# A row is changed only by events after its version, which keeps a second apply of
# the same events from counting them twice; a version the owner quarantined is
# skipped. An event it never saw (one written outside the command unit) leaves
# the row behind the log: verify_projections reports it, a rebuild heals it.
_OPENED = """
INSERT INTO {table} (account_id, owner, currency, balance, status, version, opened_at, last_activity_at)
SELECT * FROM {rows} AS new
"""
_OPENED_TYPES = ("uuid", "text", "text", "bigint", "text", "integer", "timestamptz", "timestamptz")
_CHANGED = """
UPDATE {table} AS row
   SET balance = row.balance + change.effect, status = COALESCE(change.status, row.status),
       version = change.version, last_activity_at = change.at
  FROM {rows} AS change (account_id, effect, status, first_version, version, at)
 WHERE row.account_id = change.account_id AND row.version < change.first_version
"""
_CHANGED_TYPES = ("uuid", "numeric", "text", "integer", "integer", "timestamptz")


class AccountProjection(Projection):
    name = "accounts"
    tables = ("account_read_model",)
    aggregate_types = frozenset({AGGREGATE_TYPE})
    inline = True
    description = "one row per account: owner, currency, balance, status, version (inline)"

    def apply(self, events: Sequence[EventRecord], tables: dict[str, str]) -> None:
        table = tables["account_read_model"]
        opened: list[tuple[Any, ...]] = []
        changed: list[tuple[Any, ...]] = []
        for account_id, account_events in _by_aggregate(events).items():
            first, last = account_events[0], account_events[-1]
            if first.version == 1:
                # The whole history so far: the domain's fold, which refuses what an account cannot be.
                account = BankAccount.from_events(
                    account_id, [(e.version, e.event_type, e.data) for e in account_events]
                )
                opened.append((account.id, account.owner, account.currency, account.balance, account.status,
                               account.version, first.created_at, last.created_at))  # fmt: skip
                continue
            effect, status = 0, None
            for event in account_events:
                if event.event_type == "Opened":
                    raise ValueError(f"an account opens only once, at version 1, not at version {event.version}")
                effect += money_effect(event.event_type, event.data)
                status = status_after(event.event_type) or status
            changed.append((account_id, effect, status, first.version, last.version, last.created_at))
        if opened:
            _write(_OPENED, table, _OPENED_TYPES, opened)
        if changed:
            _write(_CHANGED, table, _CHANGED_TYPES, changed)


class DailyStatementProjection(Projection):
    name = "daily_statements"
    tables = ("account_daily_statement",)
    aggregate_types = frozenset({AGGREGATE_TYPE})
    description = "per account and day: opening and closing balance, credits, debits, events (asynchronous)"

    _COLUMNS = "account_id, day, currency, opening_balance, credits, debits, closing_balance, event_count"
    _LATEST = (
        "SELECT DISTINCT ON (account_id) " + _COLUMNS + " FROM {table} "
        "WHERE account_id = ANY(%s) ORDER BY account_id, day DESC"
    )
    _UPSERT = (
        "INSERT INTO {table} (" + _COLUMNS + ") SELECT * FROM {rows} AS new "
        "ON CONFLICT (account_id, day) DO UPDATE SET "
        "currency = EXCLUDED.currency, opening_balance = EXCLUDED.opening_balance, "
        "credits = EXCLUDED.credits, debits = EXCLUDED.debits, "
        "closing_balance = EXCLUDED.closing_balance, event_count = EXCLUDED.event_count"
    )
    _TYPES = ("uuid", "date", "text", "bigint", "numeric", "numeric", "bigint", "integer")

    def apply(self, events: Sequence[EventRecord], tables: dict[str, str]) -> None:
        grouped = _by_aggregate(events)
        latest_rows = db.fetchall(_statement(self._LATEST, tables["account_daily_statement"]), [list(grouped)])
        latest = {row[0]: list(row) for row in latest_rows}
        rows: list[list[Any]] = []
        for account_id, account_events in grouped.items():
            current = latest.get(account_id)
            dirty: list[Any] | None = None  # the row these events changed last, still to write
            for event in account_events:
                # A later version may carry an earlier created_at (its transaction
                # began first and waited for the account): a statement never goes back a day.
                day = max(event.created_at.date(), current[1]) if current else event.created_at.date()
                if current is None or current[1] != day:
                    if dirty:
                        rows.append(dirty)
                    closing = current[6] if current else 0
                    current = [account_id, day, current[2] if current else "", closing, 0, 0, closing, 0]
                _add(current, event)
                dirty = current
            if dirty:
                rows.append(dirty)
        if rows:
            _write(self._UPSERT, tables["account_daily_statement"], self._TYPES, [tuple(row) for row in rows])


def _add(row: list[Any], event: EventRecord) -> None:
    """Fold one event into a statement row: [id, day, currency, opening, credits, debits, closing, count]."""
    if event.event_type == "Opened":
        row[2] = event.data["currency"]
    effect = money_effect(event.event_type, event.data)
    if effect > 0:
        row[4] += effect
    elif effect < 0:
        row[5] -= effect
    row[6] += effect
    row[7] += 1


class TotalsProjection(Projection):
    """The dashboard's figures. Asynchronous, so that its few rows are written by the runner alone:
    were commands to update them, every command of the bank would queue on the same rows."""

    name = "bank_totals"
    tables = ("bank_totals", "bank_totals_account")
    aggregate_types = frozenset({AGGREGATE_TYPE})
    description = "accounts and money per currency and status, for the dashboard (asynchronous)"

    _KNOWN = "SELECT account_id, currency, status, balance, version FROM {table} WHERE account_id = ANY(%s)"
    _ACCOUNTS = (
        "INSERT INTO {table} (account_id, currency, status, balance, version) "
        "SELECT * FROM {rows} AS new "
        "ON CONFLICT (account_id) DO UPDATE SET "
        "status = EXCLUDED.status, balance = EXCLUDED.balance, version = EXCLUDED.version"
    )
    _ACCOUNT_TYPES = ("uuid", "text", "text", "bigint", "integer")
    _TOTALS = (
        "INSERT INTO {table} AS total (currency, status, accounts, balance) "
        "SELECT * FROM {rows} AS new "
        "ON CONFLICT (currency, status) DO UPDATE SET "
        "accounts = total.accounts + EXCLUDED.accounts, balance = total.balance + EXCLUDED.balance"
    )
    _TOTAL_TYPES = ("text", "text", "bigint", "numeric")
    # A total no account is in any more goes: the rows are then the same however the events were batched.
    _EMPTIED = "DELETE FROM {table} WHERE accounts = 0"

    def apply(self, events: Sequence[EventRecord], tables: dict[str, str]) -> None:
        grouped = _by_aggregate(events)
        known_rows = db.fetchall(_statement(self._KNOWN, tables["bank_totals_account"]), [list(grouped)])
        known = {row[0]: tuple(row[1:]) for row in known_rows}
        accounts: list[tuple[Any, ...]] = []
        moved: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])  # (currency, status): [accounts, money]
        for account_id, account_events in grouped.items():
            before = known.get(account_id)
            if before is None and account_events[0].version != 1:
                continue  # never opened as far as replay knows (its Opened set aside): no account to count
            currency, status, balance, version = before or ("", ACTIVE, 0, 0)
            for event in account_events:
                if event.version <= version:
                    continue  # already counted
                if event.event_type == "Opened":
                    if version:
                        raise ValueError(f"an account opens only once, at version 1, not at version {event.version}")
                    currency = event.data["currency"]
                balance += money_effect(event.event_type, event.data)
                status = status_after(event.event_type) or status
                version = event.version
            if before is not None:
                moved[before[0], before[1]][0] -= 1
                moved[before[0], before[1]][1] -= before[2]
            moved[currency, status][0] += 1
            moved[currency, status][1] += balance
            accounts.append((account_id, currency, status, balance, version))
        if accounts:
            _write(self._ACCOUNTS, tables["bank_totals_account"], self._ACCOUNT_TYPES, accounts)
        totals = [(currency, status, n, money) for (currency, status), (n, money) in moved.items() if n or money]
        if totals:
            _write(self._TOTALS, tables["bank_totals"], self._TOTAL_TYPES, totals)
            db.write(_statement(self._EMPTIED, tables["bank_totals"]))


# A request's first event makes its row; the one event that ends it sets how (no read needed).
_ASKED = """
INSERT INTO {table} (request_id, command, account_id, recipient_id, amount, currency, maker, checker, state,
                     reason, outcome, requested_at, expires_at, decided_at, version)
SELECT * FROM {rows} AS new
"""
_ASKED_TYPES = (
    "uuid",
    "text",
    "uuid",
    "uuid",
    "bigint",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "timestamptz",
    "timestamptz",
    "timestamptz",
    "integer",
)
_DECIDED = """
UPDATE {table} AS row
   SET state = change.state, checker = change.checker, outcome = change.outcome, decided_at = change.at,
       version = change.version
  FROM {rows} AS change (request_id, state, checker, outcome, at, first_version, version)
 WHERE row.request_id = change.request_id AND row.version < change.first_version
"""
_DECIDED_TYPES = ("uuid", "text", "text", "text", "timestamptz", "integer", "integer")


class ApprovalProjection(Projection):
    name = "approvals"
    tables = ("approval_read_model",)
    aggregate_types = frozenset({REQUEST_TYPE})
    inline = True
    description = "one row per approval request: command, account, maker, checker, state (inline)"

    def apply(self, events: Sequence[EventRecord], tables: dict[str, str]) -> None:
        table = tables["approval_read_model"]
        asked: list[tuple[Any, ...]] = []
        decided: list[tuple[Any, ...]] = []
        for request_id, request_events in _by_aggregate(events).items():
            first, last = request_events[0], request_events[-1]
            start = None if first.version == 1 else _decided_only(request_id, first.version - 1)
            request = ApprovalRequest.from_events(
                request_id, [(e.version, e.event_type, e.data) for e in request_events], start
            )
            decided_at = last.created_at if len(request_events) > 1 or first.version > 1 else None
            if first.version == 1:
                asked.append((request.id, request.command, request.account_id, request.recipient_id,
                              request.amount, request.currency, request.maker, request.checker, request.state,
                              request.reason, request.outcome, first.created_at, request.expires_at, decided_at,
                              request.version))  # fmt: skip
            else:
                decided.append((request.id, request.state, request.checker, request.outcome, decided_at,
                                first.version, request.version))  # fmt: skip
        if asked:
            _write(_ASKED, table, _ASKED_TYPES, asked)
        if decided:
            _write(_DECIDED, table, _DECIDED_TYPES, decided)


def _decided_only(request_id: uuid.UUID, version: int) -> ApprovalRequest:
    """A pending request to fold the deciding event onto: the event needs nothing else of it."""
    return ApprovalRequest(request_id, version=version, state=PENDING)


accounts = register(AccountProjection())
approvals = register(ApprovalProjection())
daily_statements = register(DailyStatementProjection())
bank_totals = register(TotalsProjection())
