"""Command handlers: load the accounts, let the domain decide, hand the new events to the store.

The store's command unit (eventstore.commands) appends them together with the
inline read model, any snapshot due and the command-log row, in one transaction,
and retries a lost race. Amounts are integers of minor units; errors are
accounts.domain.DomainError subclasses with messages fit for staff.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from accounts.domain import (
    AGGREGATE_TYPE,
    EVENT_TYPES,
    STATE_SCHEMA,
    UPCASTERS,
    AccountBusy,
    AccountName,
    AccountNotFound,
    AccountOnHold,
    BankAccount,
    DomainError,
    Event,
    InvalidInput,
    UnreadableEvent,
    check_account_id,
)
from accounts.domain import transfer as decide_transfer
from eventstore import commands, snapshots
from eventstore.commands import Busy, IdempotencyKeyReused, InvalidIdempotencyKey, Unit

# What pages need of the store, they take from here: whether a command was answered
# from the command log (`with outcome() as seen`), and the race that outlasted every retry.
from eventstore.commands import outcome as outcome
from eventstore.integrity import IntegrityHold
from eventstore.models import MAX_VERSION
from eventstore.registry import Aggregate
from eventstore.store import ConcurrencyConflict as ConcurrencyConflict

# The bank account, as the store knows it (registered in AccountsConfig.ready).
ACCOUNT: Aggregate[BankAccount] = Aggregate(
    type=AGGREGATE_TYPE,
    event_types=frozenset(EVENT_TYPES),
    fold=BankAccount.from_events,
    to_snapshot=BankAccount.to_snapshot,
    from_snapshot=BankAccount.from_snapshot,
    state_schema=STATE_SCHEMA,  # a snapshot every EVENTSTORE_SNAPSHOT_EVERY events
    upcasters=UPCASTERS,
    url_name="accounts:detail",
)


def _ceiling() -> int:
    ceiling: int = settings.ACCOUNT_AMOUNT_CEILING
    return ceiling


# --- reading --------------------------------------------------------------------


def get_account(
    account_id: uuid.UUID | str,
    *,
    as_of: datetime | None = None,
    version: int | None = None,
    from_events_only: bool = False,
) -> BankAccount | None:
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
    moment = None if as_of is None else _in_utc(as_of)
    try:
        account: BankAccount = snapshots.load_at(
            ACCOUNT, account_id, version=version, as_of=moment, from_events_only=from_events_only
        )
    except IntegrityHold as hold:
        raise _on_hold(hold) from None
    return account if account.exists else None


def _on_hold(hold: IntegrityHold) -> AccountOnHold:
    """The hold, naming the account by its owner as the history before the bad version gives it."""
    before = None
    if hold.version > 1:
        try:
            before = get_account(hold.aggregate_id, version=hold.version - 1)
        except DomainError:  # its opening cannot be read either: the account has only its id
            before = None
    name = before.name if before is not None else AccountName(hold.aggregate_id, "")
    return AccountOnHold(name, hold.version, hold.reason)


def last_readable(account_id: uuid.UUID | str) -> tuple[BankAccount | None, UnreadableEvent | None]:
    """The account now, or, when one of its events cannot be read, as it was just before that
    event and the problem (for pages, which show the account and warn rather than fail)."""
    try:
        return get_account(account_id), None
    except UnreadableEvent as problem:
        return get_account(account_id, version=problem.version - 1), problem


def _in_utc(moment: object) -> datetime:
    """The moment in UTC (naive means UTC): the database then never sees an offset it cannot store."""
    if not isinstance(moment, datetime):
        raise InvalidInput(f"A moment must be a date and time, not {moment!r}.")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(f"{moment.isoformat()} is outside the calendar (years 1 to 9999 in UTC).") from None


def already_done(idempotency_keys: Iterable[str]) -> dict[str, list[BankAccount]]:
    """Which of these keys the acting member of staff's commands already used, and the
    accounts as each of those commands left them (to tell them what a form already did)."""
    return commands.already_done(idempotency_keys)


# --- writing --------------------------------------------------------------------


def _run(command: str, arguments: dict[str, Any], idempotency_key: str | None,
         handle: Callable[[Unit], None]) -> list[BankAccount]:  # fmt: skip
    try:
        return commands.run_command(command, arguments=arguments, idempotency_key=idempotency_key, handle=handle)
    except (IdempotencyKeyReused, InvalidIdempotencyKey) as error:
        raise InvalidInput(str(error)) from None
    except IntegrityHold as hold:
        raise _on_hold(hold) from None
    except Busy:
        raise AccountBusy(
            "The account is busy: another command on it is still running. Nothing was done; try again in a moment."
        ) from None


def _existing(unit: Unit, *account_ids: uuid.UUID) -> list[BankAccount]:
    """The accounts, locked for the command; AccountNotFound for one that was never opened."""
    accounts: list[BankAccount] = unit.load(ACCOUNT, *account_ids)
    for account in accounts:
        if not account.exists:
            raise AccountNotFound(f"There is no account {account.id}.")
    return accounts


def _why(idempotency_key: str | None, **why: str) -> dict[str, Any]:
    return {"idempotency_key": idempotency_key, **why}


def open_account(*, owner: str, initial_deposit: int, currency: str | None = None,
                 idempotency_key: str | None = None) -> BankAccount:  # fmt: skip
    currency = settings.DEFAULT_CURRENCY if currency is None else currency
    account_id = uuid.uuid4()
    events = BankAccount.open(
        account_id, owner=owner, currency=currency, initial_deposit=initial_deposit, ceiling=_ceiling()
    )

    def handle(unit: Unit) -> None:
        unit.record(unit.new(ACCOUNT, account_id), events, _why(idempotency_key))

    arguments = {"owner": owner, "initial_deposit": initial_deposit, "currency": currency}
    (account,) = _run("open_account", arguments, idempotency_key, handle)
    return account


def _single(command: str, account_id: uuid.UUID | str, arguments: dict[str, Any], idempotency_key: str | None,
            decide: Callable[[BankAccount], list[Event]], why: dict[str, str]) -> BankAccount:  # fmt: skip
    account_id = check_account_id(account_id)

    def handle(unit: Unit) -> None:
        (account,) = _existing(unit, account_id)
        unit.record(account, decide(account), _why(idempotency_key, **why))

    (account,) = _run(command, {"account_id": str(account_id), **arguments}, idempotency_key, handle)
    return account


def deposit(
    *, account_id: uuid.UUID | str, amount: int, source: str, idempotency_key: str | None = None
) -> BankAccount:
    return _single(
        "deposit", account_id, {"amount": amount, "source": source}, idempotency_key,
        lambda account: account.deposit(amount=amount, source=source, ceiling=_ceiling()),
        {"source": source},
    )  # fmt: skip


def withdraw(
    *, account_id: uuid.UUID | str, amount: int, reason: str, idempotency_key: str | None = None
) -> BankAccount:
    return _single(
        "withdraw", account_id, {"amount": amount, "reason": reason}, idempotency_key,
        lambda account: account.withdraw(amount=amount, reason=reason, ceiling=_ceiling()),
        {"reason": reason},
    )  # fmt: skip


def freeze(*, account_id: uuid.UUID | str, reason: str, idempotency_key: str | None = None) -> BankAccount:
    return _single(
        "freeze", account_id, {"reason": reason}, idempotency_key,
        lambda account: account.freeze(reason=reason), {"reason": reason},
    )  # fmt: skip


def unfreeze(*, account_id: uuid.UUID | str, reason: str, idempotency_key: str | None = None) -> BankAccount:
    return _single(
        "unfreeze", account_id, {"reason": reason}, idempotency_key,
        lambda account: account.unfreeze(reason=reason), {"reason": reason},
    )  # fmt: skip


def close_account(*, account_id: uuid.UUID | str, reason: str, idempotency_key: str | None = None) -> BankAccount:
    return _single(
        "close_account", account_id, {"reason": reason}, idempotency_key,
        lambda account: account.close(reason=reason), {"reason": reason},
    )  # fmt: skip


def transfer(*, from_account_id: uuid.UUID | str, to_account_id: uuid.UUID | str, amount: int, reference: str,
             idempotency_key: str | None = None) -> tuple[BankAccount, BankAccount]:  # fmt: skip
    source_id, target_id = check_account_id(from_account_id), check_account_id(to_account_id)
    transfer_id = str(uuid.uuid4())

    def handle(unit: Unit) -> None:
        source, target = _existing(unit, source_id, target_id)
        sent, received = decide_transfer(
            source, target, transfer_id=transfer_id, amount=amount, reference=reference, ceiling=_ceiling()
        )
        why = _why(idempotency_key, reference=reference, transfer_id=transfer_id)
        unit.record(source, sent, why)
        unit.record(target, received, why)

    arguments = {"from": str(source_id), "to": str(target_id), "amount": amount, "reference": reference}
    source, target = _run("transfer", arguments, idempotency_key, handle)
    return source, target


def take_snapshot(account_id: uuid.UUID | str) -> BankAccount:
    """Store the account's current state, replayed from its events, as its snapshot,
    replacing whatever snapshot was there (a cache: it changes no answer)."""
    account: BankAccount = snapshots.take(ACCOUNT, check_account_id(account_id))
    if not account.exists:
        raise AccountNotFound(f"There is no account {account_id}.")
    return account
