"""Command handlers: the only code that appends account events.

Each command loads the accounts it touches (snapshot + tail), lets the domain
decide, and appends the events together with the command-log row, the inline
read model and any due snapshot, in one transaction (eventstore.commands).
Amounts are integers of minor units; errors are accounts.domain.DomainError
subclasses with messages fit for staff.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Callable

from django.conf import settings

from accounts import projections
from accounts.domain import (
    AGGREGATE_TYPE,
    STATE_SCHEMA,
    AccountBusy,
    AccountNotFound,
    BankAccount,
    InvalidInput,
    UnreadableEvent,
    check_account_id,
)
from accounts.domain import transfer as decide_transfer
from eventstore import db
from eventstore.commands import Busy, IdempotencyKeyReused, InvalidIdempotencyKey, recorded_results, run_command
from eventstore.snapshots import crosses_snapshot_boundary, load_with_snapshot, lock_key, save_snapshot
from eventstore.store import MAX_VERSION, EventStore, NewEvent

store = EventStore()


def _ceiling() -> int:
    return settings.ACCOUNT_AMOUNT_CEILING


# --- reading --------------------------------------------------------------------


def _loaded(account_id: uuid.UUID, up_to_version: int | None = None, *, lock: bool = False,
            from_events_only: bool = False) -> tuple[BankAccount, datetime | None]:  # fmt: skip
    """The account (snapshot + tail) and the database's clock read once its lock was held."""
    loaded = load_with_snapshot(
        account_id,
        schema=None if from_events_only else STATE_SCHEMA,
        restore=BankAccount.from_snapshot,
        up_to_version=up_to_version,
        lock=lock,
    )
    return BankAccount.from_events(account_id, loaded.events, start=loaded.start), loaded.clock


def _load(account_id: uuid.UUID, up_to_version: int | None = None, **options) -> BankAccount:
    return _loaded(account_id, up_to_version, **options)[0]


def _version_at(account_id: uuid.UUID, moment: datetime) -> int:
    return db.fetchone(
        "SELECT COALESCE(max(version), 0) FROM events WHERE aggregate_id = %s AND created_at <= %s",
        [account_id, moment],
    )[0]


def get_account(account_id, *, as_of: datetime | None = None, version: int | None = None,
                from_events_only: bool = False) -> BankAccount | None:  # fmt: skip
    """The account now, as of a moment, or at a version; None if it did not exist then.

    `from_events_only` ignores snapshots: the account is replayed from its first event.
    """
    try:
        account_id = check_account_id(account_id)
    except AccountNotFound:
        return None
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= MAX_VERSION
    ):
        raise InvalidInput(f"A version must be a whole number from 0 to {MAX_VERSION}, not {version!r}.")
    if as_of is not None:
        as_of = _in_utc(as_of)
        at_time = _version_at(account_id, as_of)
        version = at_time if version is None else min(version, at_time)
    account = _load(account_id, up_to_version=version, from_events_only=from_events_only)
    return account if account.exists else None


def last_readable(account_id) -> tuple[BankAccount | None, UnreadableEvent | None]:
    """The account now, or, when one of its events cannot be read, as it was just before that
    event and the problem (for pages, which show the account and warn rather than fail)."""
    try:
        return get_account(account_id), None
    except UnreadableEvent as problem:
        return get_account(account_id, version=problem.version - 1), problem


def _in_utc(moment) -> datetime:
    """The moment in UTC (naive means UTC): the database then never sees an offset it cannot store."""
    if not isinstance(moment, datetime):
        raise InvalidInput(f"A moment must be a date and time, not {moment!r}.")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:
        raise InvalidInput(f"{moment.isoformat()} is outside the calendar (years 1 to 9999 in UTC).") from None


def _existing_locked(account_id: uuid.UUID) -> tuple[BankAccount, datetime]:
    """The account, with its writer lock held until the command's transaction ends, and the
    database's clock read once the lock was held: the earliest its new events may be dated."""
    account, clock = _loaded(account_id, lock=True)
    if not account.exists or clock is None:
        raise AccountNotFound(f"There is no account {account_id}.")
    return account, clock


def _clock() -> datetime:
    return db.fetchone("SELECT clock_timestamp()")[0]


# --- writing --------------------------------------------------------------------


def _record(account: BankAccount, events, metadata: dict, moment: datetime) -> BankAccount:
    """Append one account's new events, dated `moment`; snapshot when due; return its new state."""
    store.append(
        account.id,
        AGGREGATE_TYPE,
        account.version,
        [NewEvent(event.event_type, event.to_data()) for event in events],
        metadata=metadata,
        created_at=moment,
    )
    after = account.with_events(events)
    if crosses_snapshot_boundary(account.version, after.version, settings.EVENTSTORE_SNAPSHOT_EVERY):
        save_snapshot(after.id, AGGREGATE_TYPE, version=after.version, schema=STATE_SCHEMA, state=after.to_snapshot())
    return after


def _execute(command: str, arguments: dict, idempotency_key, decide: Callable[[], tuple]):
    """Run a command; `decide()` loads and returns (its time, [(account, events, metadata)])."""

    def handle():
        moment, decided = decide()
        accounts = [_record(account, events, metadata, moment) for account, events, metadata in decided]
        projections.record_accounts(accounts, moment)
        return accounts, {"accounts": [[str(a.id), a.version] for a in accounts]}

    try:
        return run_command(
            command,
            arguments=arguments,
            idempotency_key=idempotency_key,
            handle=handle,
            replay=_accounts_after,
        )
    except (IdempotencyKeyReused, InvalidIdempotencyKey) as error:
        raise InvalidInput(str(error)) from None
    except Busy:
        raise AccountBusy(
            "The account is busy: another command on it is still running. Nothing was done; try again in a moment."
        ) from None


def _accounts_after(result: dict) -> list[BankAccount]:
    """The accounts as a recorded command left them, from its command-log result."""
    return [_load(uuid.UUID(account_id), up_to_version=version) for account_id, version in result["accounts"]]


def already_done(idempotency_keys) -> dict[str, list[BankAccount]]:
    """Which of these keys the acting member of staff's commands already used, and the
    accounts as each of those commands left them (to tell them what a form already did)."""
    return {key: _accounts_after(result) for key, result in recorded_results(idempotency_keys).items()}


def _metadata(idempotency_key, **why) -> dict:
    return {"idempotency_key": idempotency_key, **why}


def open_account(*, owner, initial_deposit, currency=None, idempotency_key=None) -> BankAccount:
    currency = settings.DEFAULT_CURRENCY if currency is None else currency
    account_id = uuid.uuid4()
    events = BankAccount.open(
        account_id, owner=owner, currency=currency, initial_deposit=initial_deposit, ceiling=_ceiling()
    )
    arguments = {"owner": owner, "initial_deposit": initial_deposit, "currency": currency}
    (account,) = _execute(
        "open_account",
        arguments,
        idempotency_key,
        lambda: (_clock(), [(BankAccount(account_id), events, _metadata(idempotency_key))]),
    )
    return account


def _single(command, account_id, arguments, idempotency_key, decide, why) -> BankAccount:
    account_id = check_account_id(account_id)

    def decide_all():
        account, clock = _existing_locked(account_id)
        return clock, [(account, decide(account), _metadata(idempotency_key, **why))]

    (account,) = _execute(command, {"account_id": str(account_id), **arguments}, idempotency_key, decide_all)
    return account


def deposit(*, account_id, amount, source, idempotency_key=None) -> BankAccount:
    return _single(
        "deposit", account_id, {"amount": amount, "source": source}, idempotency_key,
        lambda account: account.deposit(amount=amount, source=source, ceiling=_ceiling()),
        {"source": source},
    )  # fmt: skip


def withdraw(*, account_id, amount, reason, idempotency_key=None) -> BankAccount:
    return _single(
        "withdraw", account_id, {"amount": amount, "reason": reason}, idempotency_key,
        lambda account: account.withdraw(amount=amount, reason=reason, ceiling=_ceiling()),
        {"reason": reason},
    )  # fmt: skip


def freeze(*, account_id, reason, idempotency_key=None) -> BankAccount:
    return _single(
        "freeze", account_id, {"reason": reason}, idempotency_key,
        lambda account: account.freeze(reason=reason), {"reason": reason},
    )  # fmt: skip


def unfreeze(*, account_id, reason, idempotency_key=None) -> BankAccount:
    return _single(
        "unfreeze", account_id, {"reason": reason}, idempotency_key,
        lambda account: account.unfreeze(reason=reason), {"reason": reason},
    )  # fmt: skip


def close_account(*, account_id, reason, idempotency_key=None) -> BankAccount:
    return _single(
        "close_account", account_id, {"reason": reason}, idempotency_key,
        lambda account: account.close(reason=reason), {"reason": reason},
    )  # fmt: skip


def transfer(*, from_account_id, to_account_id, amount, reference, idempotency_key=None) -> tuple[BankAccount, BankAccount]:
    source_id, target_id = check_account_id(from_account_id), check_account_id(to_account_id)
    transfer_id = str(uuid.uuid4())

    def decide_all():
        # Lock (and load) in key order, so two opposite transfers cannot deadlock.
        loaded = {i: _existing_locked(i) for i in sorted({source_id, target_id}, key=lock_key)}
        (source, _), (target, _) = loaded[source_id], loaded[target_id]
        clock = max(clock for _, clock in loaded.values())
        sent, received = decide_transfer(
            source, target, transfer_id=transfer_id, amount=amount, reference=reference, ceiling=_ceiling()
        )
        why = _metadata(idempotency_key, reference=reference, transfer_id=transfer_id)
        return clock, [(source, sent, why), (target, received, why)]

    arguments = {"from": str(source_id), "to": str(target_id), "amount": amount, "reference": reference}
    source, target = _execute("transfer", arguments, idempotency_key, decide_all)
    return source, target


def take_snapshot(account_id) -> BankAccount:
    """Store the account's current state, replayed from its events, as its snapshot,
    replacing whatever snapshot was there (a cache: it changes no answer)."""
    account = get_account(account_id, from_events_only=True)
    if account is None:
        raise AccountNotFound(f"There is no account {account_id}.")
    save_snapshot(
        account.id, AGGREGATE_TYPE, version=account.version, schema=STATE_SCHEMA, state=account.to_snapshot(),
        replace=True,
    )  # fmt: skip
    return account
