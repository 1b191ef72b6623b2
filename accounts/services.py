"""Command handlers: load the accounts, let the domain decide, hand the new events to the store.

The store's command unit (eventstore.commands) appends them together with the
inline read model, any snapshot due and the command-log row, in one transaction,
and retries a lost race. Amounts are integers of minor units; errors are
accounts.domain.DomainError subclasses with messages fit for staff.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.utils import timezone

from accounts.approvals import EVENT_TYPES as REQUEST_EVENT_TYPES
from accounts.approvals import (
    PENDING,
    REQUEST_SCHEMA,
    REQUEST_TYPE,
    ApprovalPending,
    ApprovalRequest,
    RequestNotFound,
    RequestNotPending,
    UnreadableRequest,
)
from accounts.domain import (
    AGGREGATE_TYPE,
    EVENT_TYPES,
    STATE_SCHEMA,
    UPCASTERS,
    WAIVED,
    AccountBusy,
    AccountName,
    AccountNotFound,
    AccountOnHold,
    BankAccount,
    DomainError,
    Event,
    FourEyes,
    InvalidInput,
    NeedsApproval,
    UnreadableEvent,
    check_account_id,
)
from accounts.domain import transfer as decide_transfer
from accounts.models import Approval
from accounts.money import threshold
from eventstore import commands, context, snapshots
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
# An approval request (accounts.approvals): a few events each, so never a snapshot.
REQUEST: Aggregate[ApprovalRequest] = Aggregate(
    type=REQUEST_TYPE,
    event_types=frozenset(REQUEST_EVENT_TYPES),
    fold=ApprovalRequest.from_events,
    to_snapshot=ApprovalRequest.to_snapshot,
    from_snapshot=ApprovalRequest.from_snapshot,
    state_schema=REQUEST_SCHEMA,
    snapshot_every=0,
    url_name="accounts:approval",
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


def _on_hold(hold: IntegrityHold) -> AccountOnHold | UnreadableRequest:
    """The hold, naming the account by its owner as the history before the bad version gives it
    (or the approval request, when the history that failed is a request's)."""
    if Approval.objects.filter(request_id=hold.aggregate_id).exists():
        return UnreadableRequest(hold.aggregate_id, hold.version, hold.reason)
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
    """Raises ApprovalPending, having stored an approval request, from APPROVAL_AT on."""
    (account,) = _may_wait(
        "withdraw", {"account_id": str(check_account_id(account_id)), "amount": amount, "reason": reason},
        idempotency_key, {"reason": reason},
    )  # fmt: skip
    return account


def freeze(*, account_id: uuid.UUID | str, reason: str, idempotency_key: str | None = None) -> BankAccount:
    return _single(
        "freeze", account_id, {"reason": reason}, idempotency_key,
        lambda account: account.freeze(reason=reason), {"reason": reason},
    )  # fmt: skip


def unfreeze(*, account_id: uuid.UUID | str, reason: str, idempotency_key: str | None = None) -> BankAccount:
    """Always waits for a second person: raises ApprovalPending, having stored an approval request."""
    (account,) = _may_wait(
        "unfreeze", {"account_id": str(check_account_id(account_id)), "reason": reason}, idempotency_key,
        {"reason": reason},
    )  # fmt: skip
    return account


def close_account(*, account_id: uuid.UUID | str, reason: str, idempotency_key: str | None = None) -> BankAccount:
    """Always waits for a second person: raises ApprovalPending, having stored an approval request."""
    (account,) = _may_wait(
        "close_account", {"account_id": str(check_account_id(account_id)), "reason": reason}, idempotency_key,
        {"reason": reason},
    )  # fmt: skip
    return account


def transfer(*, from_account_id: uuid.UUID | str, to_account_id: uuid.UUID | str, amount: int, reference: str,
             idempotency_key: str | None = None) -> tuple[BankAccount, BankAccount]:  # fmt: skip
    """Raises ApprovalPending, having stored an approval request, from APPROVAL_AT on."""
    source_id, target_id = check_account_id(from_account_id), check_account_id(to_account_id)
    arguments = {"account_id": str(source_id), "to_account_id": str(target_id), "amount": amount,
                 "reference": reference}  # fmt: skip
    source, target = _may_wait("transfer", arguments, idempotency_key, {"reference": reference})
    return source, target


# --- four eyes ------------------------------------------------------------------------

# The commands that may wait for a second person: each decides, on its accounts (the account,
# then a transfer's recipient), the events of each, with the four-eyes rule it is given.
Decision = Callable[[list[BankAccount], dict[str, Any], FourEyes], list[list[Event]]]
_DECISIONS: dict[str, Decision] = {
    "withdraw": lambda accounts, a, eyes: [
        accounts[0].withdraw(amount=a["amount"], reason=a["reason"], four_eyes=eyes, ceiling=_ceiling())
    ],
    "unfreeze": lambda accounts, a, eyes: [accounts[0].unfreeze(reason=a["reason"], four_eyes=eyes)],
    "close_account": lambda accounts, a, eyes: [accounts[0].close(reason=a["reason"], four_eyes=eyes)],
    "transfer": lambda accounts, a, eyes: list(decide_transfer(
        accounts[0], accounts[1], transfer_id=a["transfer_id"], amount=a["amount"], reference=a["reference"],
        four_eyes=eyes, ceiling=_ceiling(),
    )),
}  # fmt: skip

# How each command's arguments were logged before four eyes (the command log's hash must not change).
_LOGGED = {
    "transfer": lambda a: {"from": a["account_id"], "to": a["to_account_id"], "amount": a["amount"],
                           "reference": a["reference"]},
}  # fmt: skip


def approval_from(currency: str) -> int:
    """The amount (minor units) from which a withdrawal or a transfer in `currency` needs a second person."""
    return threshold(settings.APPROVAL_AT, settings.APPROVAL_AT_OTHERS, currency)


def _actor() -> str:
    return str(context.current().get("actor") or "anonymous")


def _accounts_of(arguments: dict[str, Any]) -> list[uuid.UUID]:
    return [uuid.UUID(arguments["account_id"])] + (
        [uuid.UUID(arguments["to_account_id"])] if "to_account_id" in arguments else []
    )


def _may_wait(command: str, arguments: dict[str, Any], idempotency_key: str | None,
              why: dict[str, str]) -> list[BankAccount]:  # fmt: skip
    """Run a command that may need a second person: its events, or else an approval request
    (raised as ApprovalPending once stored). The rules are checked first: a command they refuse
    is refused at once, never sent for approval."""
    asked: list[BankAccount] = []

    def handle(unit: Unit) -> None:
        accounts = _existing(unit, *_accounts_of(arguments))
        decided = {**arguments, "transfer_id": str(uuid.uuid4())} if command == "transfer" else arguments
        try:
            events = _DECISIONS[command](accounts, decided, FourEyes(approval_from(accounts[0].currency)))
        except NeedsApproval:
            asked.append(accounts[0])
            request = unit.new(REQUEST, uuid.uuid4())
            expires_at = unit.now() + timedelta(hours=settings.APPROVAL_EXPIRES_AFTER_HOURS)
            unit.record(request, ApprovalRequest.ask(command, arguments, accounts[0], maker=_actor(),
                                                     reason=why.get("reason") or why.get("reference", ""),
                                                     expires_at=expires_at), _why(idempotency_key))  # fmt: skip
            return
        extra = {"transfer_id": decided["transfer_id"]} if command == "transfer" else {}
        for account, account_events in zip(accounts, events, strict=True):
            unit.record(account, account_events, _why(idempotency_key, **why, **extra))

    logged = _LOGGED.get(command, dict)(arguments)
    states = _run(command, logged, idempotency_key, handle)
    if states and isinstance(states[0], ApprovalRequest):  # asked now, or by this very form before
        request: ApprovalRequest = states[0]
        account = asked[0] if asked else get_account(_accounts_of(request.arguments)[0])
        raise ApprovalPending(request, account.name if account else AccountName(request.account_ids[0], ""))
    return states


def check_request_id(request_id: object) -> uuid.UUID:
    try:
        return uuid.UUID(str(request_id))
    except ValueError:
        raise RequestNotFound(f"There is no approval request {str(request_id)[:60]!r}.") from None


def get_request(request_id: uuid.UUID | str) -> ApprovalRequest | None:
    """The approval request as its events give it; None if there is none."""
    try:
        request: ApprovalRequest = snapshots.load_at(REQUEST, check_request_id(request_id))
    except IntegrityHold as hold:
        raise UnreadableRequest(hold.aggregate_id, hold.version, hold.reason) from None
    return request if request.exists else None


def what_approval_would_do(request: ApprovalRequest) -> list[tuple[BankAccount, BankAccount]]:
    """Each account the request acts on, as it is now and as approving now would leave it (a read:
    nothing is stored). Raises the DomainError that would make the approval fail now."""
    accounts = [get_account(account_id) for account_id in request.account_ids]
    if any(account is None for account in accounts):
        raise AccountNotFound("An account this request acts on does not exist.")
    now = cast(list[BankAccount], accounts)
    arguments = {**request.arguments, "transfer_id": str(uuid.uuid4())}
    events = _DECISIONS[request.command](now, arguments, WAIVED)
    return [(account, account.with_events(account_events)) for account, account_events in zip(now, events, strict=True)]


def approve(*, request_id: uuid.UUID | str, idempotency_key: str | None = None) -> ApprovalRequest:
    """Approve as the acting member of staff (never the maker) and run the command, in one transaction,
    against the accounts as they are now. If the rules refuse it by then, the request is marked failed
    with their reason and nothing moves: the request comes back approved or failed."""
    request_id = check_request_id(request_id)

    def handle(unit: Unit) -> None:
        (request,) = unit.load(REQUEST, request_id)
        checker = _actor()
        approved = request.approve(checker=checker, now=unit.now())
        accounts = _existing(unit, *request.account_ids)
        arguments = {**request.arguments, "transfer_id": str(uuid.uuid4())}
        try:
            events = _DECISIONS[request.command](accounts, arguments, WAIVED)
        except DomainError as refused:
            unit.record(request, request.fail(checker=checker, refusal=refused), _why(idempotency_key))
            return
        unit.record(request, approved, _why(idempotency_key))
        both = {"approval_request_id": str(request.id), "maker": request.maker, "checker": checker}
        extra = {"transfer_id": arguments["transfer_id"]} if request.command == "transfer" else {}
        why = {key: request.arguments[key] for key in ("reason", "reference") if key in request.arguments}
        for account, account_events in zip(accounts, events, strict=True):
            unit.record(account, account_events, _why(idempotency_key, **why, **both, **extra))

    request, *_ = _run("approve", {"request_id": str(request_id)}, idempotency_key, handle)
    return cast(ApprovalRequest, request)


def _on_request(command: str, request_id: uuid.UUID | str, arguments: dict[str, Any], idempotency_key: str | None,
                decide: Callable[[ApprovalRequest, datetime], list[Event]]) -> ApprovalRequest:  # fmt: skip
    request_id = check_request_id(request_id)

    def handle(unit: Unit) -> None:
        (request,) = unit.load(REQUEST, request_id)
        if not request.exists:
            raise RequestNotFound(f"There is no approval request {request_id}.")
        unit.record(request, decide(request, unit.now()), _why(idempotency_key))

    (request,) = _run(command, {"request_id": str(request_id), **arguments}, idempotency_key, handle)
    return cast(ApprovalRequest, request)


def reject(*, request_id: uuid.UUID | str, reason: str, idempotency_key: str | None = None) -> ApprovalRequest:
    """Reject as the acting member of staff (never the maker): nothing moves, and the request is closed."""
    return _on_request("reject", request_id, {"reason": reason}, idempotency_key,
                       lambda request, now: request.reject(checker=_actor(), reason=reason, now=now))  # fmt: skip


def cancel(*, request_id: uuid.UUID | str, reason: str, idempotency_key: str | None = None) -> ApprovalRequest:
    """Withdraw one's own request while it is pending."""
    return _on_request("cancel", request_id, {"reason": reason}, idempotency_key,
                       lambda request, now: request.cancel(by=_actor(), reason=reason, now=now))  # fmt: skip


def expire(*, request_id: uuid.UUID | str) -> ApprovalRequest:
    """Write down that a pending request's time ran out (pages already show it expired)."""
    return _on_request("expire", request_id, {}, None, lambda request, now: request.expire(now=now))


def expire_requests() -> int:
    """Expire every pending request past its time (manage.py expire_requests, and the runner); how many."""
    expired = 0
    overdue = Approval.objects.filter(state=PENDING, expires_at__lte=timezone.now()).order_by("expires_at")
    for request_id in overdue.values_list("request_id", flat=True).iterator():
        try:
            expire(request_id=request_id)
            expired += 1
        except RequestNotPending:  # decided meanwhile, by someone else
            continue
    return expired


def take_snapshot(account_id: uuid.UUID | str) -> BankAccount:
    """Store the account's current state, replayed from its events, as its snapshot,
    replacing whatever snapshot was there (a cache: it changes no answer)."""
    account: BankAccount = snapshots.take(ACCOUNT, check_account_id(account_id))
    if not account.exists:
        raise AccountNotFound(f"There is no account {account_id}.")
    return account
