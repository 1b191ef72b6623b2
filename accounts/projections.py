"""The account read model, kept inline: in the same transaction as the events.

The row is the aggregate's state after its latest event, plus when it opened and
when it last moved. Both times are the transaction's now(), which is exactly the
created_at its events get. `version` keeps an older state from overwriting a newer.
"""

from __future__ import annotations

from accounts.domain import BankAccount
from eventstore import db

_UPSERT = """
INSERT INTO account_read_model
    (account_id, owner, currency, balance, status, version, opened_at, last_activity_at)
VALUES {rows}
ON CONFLICT (account_id) DO UPDATE
   SET owner = EXCLUDED.owner, currency = EXCLUDED.currency, balance = EXCLUDED.balance,
       status = EXCLUDED.status, version = EXCLUDED.version, last_activity_at = EXCLUDED.last_activity_at
 WHERE account_read_model.version < EXCLUDED.version
"""
_ROW = "(%s, %s, %s, %s, %s, %s, now(), now())"


def record_accounts(accounts: list[BankAccount]) -> None:
    """Upsert the rows of accounts that just changed, in one statement, without waiting for it."""
    params = []
    for account in accounts:
        params += [account.account_id, account.owner, account.currency, account.balance, account.status, account.version]
    db.write(_UPSERT.format(rows=", ".join([_ROW] * len(accounts))), params)
