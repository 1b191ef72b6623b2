"""The account read model, kept inline: in the same transaction as the events.

The row is the aggregate's state after its latest event, plus when it opened and
when it last moved; `version` guards against an older state overwriting a newer.
"""

from __future__ import annotations

from django.db import connection

from accounts.domain import BankAccount
from eventstore.store import StoredEvent

_UPSERT = """
INSERT INTO account_read_model
    (account_id, owner, currency, balance, status, version, opened_at, last_activity_at)
VALUES {rows}
ON CONFLICT (account_id) DO UPDATE
   SET owner = EXCLUDED.owner, currency = EXCLUDED.currency, balance = EXCLUDED.balance,
       status = EXCLUDED.status, version = EXCLUDED.version, last_activity_at = EXCLUDED.last_activity_at
 WHERE account_read_model.version < EXCLUDED.version
"""
_ROW = "(%s, %s, %s, %s, %s, %s, %s, %s)"


def record_accounts(changes: list[tuple[BankAccount, list[StoredEvent]]]) -> None:
    """Upsert the rows of accounts that just got `events`, all in one statement."""
    params = []
    for account, events in changes:
        params += [
            account.account_id, account.owner, account.currency, account.balance, account.status,
            account.version, events[0].created_at, events[-1].created_at,
        ]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(_UPSERT.format(rows=", ".join([_ROW] * len(changes))), params)
