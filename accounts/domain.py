"""The bank's rules: account events, the BankAccount aggregate, and its errors.

Pure Python, no Django and no database: deciding is a function of (state,
command) -> new events or a DomainError, and replay is a fold over events.

Invariants (checked here, and by the tests against a plain model):
  I1  a balance is never negative;
  I2  only an active account takes deposits, withdrawals and transfers;
  I3  an account's currency never changes, and money only moves between
      accounts of one currency;
  I4  an account closes only at a zero balance, and a closed account stays closed;
  I5  a transfer's two events carry the same transfer id and amount, so money is
      conserved across the bank;
  I6  a balance never exceeds MAX_BALANCE.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, ClassVar, Iterable  # noqa: UP035  test_domain.py allows typing, not collections.abc

# ISO 4217 codes the bank handles, with their number of decimal places.
CURRENCIES = {
    "EUR": 2, "USD": 2, "GBP": 2, "CHF": 2, "SEK": 2, "NOK": 2, "DKK": 2,
    "PLN": 2, "CZK": 2, "HUF": 2, "JPY": 0, "ISK": 0, "BHD": 3, "KWD": 3,
}  # fmt: skip
DEFAULT_AMOUNT_CEILING = 10**13  # minor units: 100 billion in a two-decimal currency
# The largest balance the ledger records: read models hold balances in PostgreSQL's bigint.
MAX_BALANCE = 2**63 - 1
MAX_TEXT_LENGTH = 500
MAX_OWNER_LENGTH = 200
AGGREGATE_TYPE = "BankAccount"
STATE_SCHEMA = 2  # bump when the snapshot shape changes: older snapshots are then ignored (1 named the id account_id)

ACTIVE, FROZEN, CLOSED = "active", "frozen", "closed"
STATUSES = (ACTIVE, FROZEN, CLOSED)


@dataclass(frozen=True)
class AccountName:
    """An account as a refusal names it: by its owner. The pages make it a link to the account."""

    id: uuid.UUID
    owner: str

    def __str__(self) -> str:
        return self.owner or f"account {self.id}"


class DomainError(Exception):
    """A command the bank's rules refuse; the message is fit to show a member of staff.

    It is made of text and the accounts it names (`parts`): read as a string, each
    account is its owner's name; a page links each to the account.
    """

    def __init__(self, *parts: str | AccountName) -> None:
        self.parts = parts
        super().__init__("".join(map(str, parts)))


class AccountNotFound(DomainError):
    pass


class AccountFrozen(DomainError):
    pass


class AccountClosed(DomainError):
    pass


class AccountNotFrozen(DomainError):
    pass


class InsufficientFunds(DomainError):
    pass


class InvalidAmount(DomainError):
    pass


class BalanceLimitExceeded(InvalidAmount):
    pass


class InvalidInput(DomainError):
    """Text or identifiers a command cannot use (blank reason, unknown currency, ...)."""


class AccountBusy(DomainError):
    """Another command held the account for longer than a member of staff should wait."""


class SameAccountTransfer(DomainError):
    pass


class CurrencyMismatch(DomainError):
    pass


class BalanceNotZero(DomainError):
    pass


class UnreadableEvent(DomainError):
    """A stored event the rules cannot fold (malformed, or breaking an invariant): the account
    cannot be trusted past it, so every command on it is refused until someone investigates.

    A refusal names the account by its owner; `description` names it by its id (for the people
    who run the bank's systems), `on_its_page` says "this account" (for the account's own page).
    """

    problem = "cannot be read"

    def __init__(self, account: AccountName, version: int, event_type: str, reason: str) -> None:
        self.account_id, self.version, self.event_type = account.id, version, event_type
        finding = f"{f' ({str(event_type)[:60]})' if event_type else ''} {self.problem}: {reason}."
        self.description = f"Version {version} of account {account.id}{finding}"
        self.on_its_page = f"Version {version} of this account{finding}"
        whose = f"Version {version} of the account of " if account.owner else f"Version {version} of "
        super().__init__(
            whose, account, f"{finding} Nothing was done; an administrator must investigate the account's history."
        )


class AccountOnHold(UnreadableEvent):
    """The account's stored history failed its integrity check (a row not signed by this
    application, or changed since): every command on it is refused until someone investigates."""

    problem = "failed its integrity check"

    def __init__(self, account: AccountName, version: int, reason: str) -> None:
        super().__init__(account, version, "", reason)


class NeedsApproval(Exception):
    """The rules allow the command, but a second person must approve it first (four eyes).

    Not a refusal: the command unit turns it into an approval request, which moves nothing.
    """

    def __init__(self, command: str) -> None:
        self.command = command
        super().__init__(f"A {command} like this one needs a second person's approval.")


@dataclass(frozen=True)
class FourEyes:
    """Which decisions wait for a second person: withdrawals and transfers from `from_amount`
    (minor units of the account's currency), every close and every unfreeze.

    `WAIVED` waits for nobody: a checker has approved the command already, or it is the owner's
    bulk load (seed_demo, generate_events). Every decision that can wait is told which applies;
    none has a default, so nobody skips the rule by leaving it out.
    """

    from_amount: int | None

    def check(self, command: str, amount: int | None = None) -> None:
        """Raise NeedsApproval if the command must wait (an `amount` of None: it always does)."""
        if self.from_amount is not None and (amount is None or amount >= self.from_amount):
            raise NeedsApproval(command)


WAIVED = FourEyes(None)


# --- events ---------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """An account event; `schema` is the payload version stored with it."""

    schema: ClassVar[int] = 1

    @property
    def event_type(self) -> str:
        return type(self).__name__

    def to_data(self) -> dict[str, Any]:
        names = _FIELD_NAMES.get(type(self))
        if names is None:
            names = _FIELD_NAMES[type(self)] = tuple(field.name for field in dataclasses.fields(self))
        data = {name: getattr(self, name) for name in names}
        data["schema_version"] = self.schema
        return data


# Each event class's payload fields, looked up once: every command and every generated event asks.
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


@dataclass(frozen=True)
class Opened(Event):
    schema: ClassVar[int] = 2  # 1 stored initial_balance as a decimal string
    account_id: str
    owner: str
    currency: str
    initial_balance: int


@dataclass(frozen=True)
class Deposited(Event):
    schema: ClassVar[int] = 2  # 1 stored amount as a decimal string
    amount: int
    source: str


@dataclass(frozen=True)
class Withdrawn(Event):
    schema: ClassVar[int] = 2  # 1 stored amount as a decimal string
    amount: int
    reason: str


@dataclass(frozen=True)
class Frozen(Event):
    reason: str


@dataclass(frozen=True)
class Unfrozen(Event):
    reason: str


@dataclass(frozen=True)
class Closed(Event):
    reason: str


@dataclass(frozen=True)
class TransferSent(Event):
    transfer_id: str
    to_account_id: str
    amount: int
    reference: str


@dataclass(frozen=True)
class TransferReceived(Event):
    transfer_id: str
    from_account_id: str
    amount: int
    reference: str


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (Opened, Deposited, Withdrawn, Frozen, Unfrozen, Closed, TransferSent, TransferReceived)
}


# Which events move money in and which out: every reader folds them the same way.
CREDITS = frozenset({"Deposited", "TransferReceived"})
DEBITS = frozenset({"Withdrawn", "TransferSent"})
_STATUS_AFTER = {"Opened": ACTIVE, "Frozen": FROZEN, "Unfrozen": ACTIVE, "Closed": CLOSED}
_COUNTERPARTY = {"TransferSent": "to_account_id", "TransferReceived": "from_account_id"}
LABELS = {
    "Opened": "Account opened", "Deposited": "Deposit", "Withdrawn": "Withdrawal",
    "Frozen": "Account frozen", "Unfrozen": "Account unfrozen", "Closed": "Account closed",
    "TransferSent": "Transfer sent", "TransferReceived": "Transfer received",
}  # fmt: skip


def event_from_data(event_type: str, data: dict[str, Any]) -> Event:
    """Build the domain event from a current-schema payload (upcast it first)."""
    cls = EVENT_TYPES[event_type]
    return cls(**{key: value for key, value in data.items() if key != "schema_version"})


def decimal_string_to_minor_units(data: dict[str, Any], field: str) -> dict[str, Any]:
    """Upcaster for schema 1 payloads, which stored money as a decimal string.

    Schema 1 was the seed's: every account was in a two-decimal currency, so
    "12.50" is 1250 minor units. Exact: anything else (more decimals, no amount)
    is left as it is, for the fold to refuse as an unreadable event.
    """
    match = re.fullmatch(r"(\d+)(?:\.(\d{1,2}))?", str(data.get(field)))
    if not match:
        return {**data, "schema_version": 2}
    whole, cents = match.group(1), (match.group(2) or "").ljust(2, "0")
    return {**data, field: int(whole) * 100 + int(cents), "schema_version": 2}


UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {
    ("Opened", 1): lambda data: decimal_string_to_minor_units(data, "initial_balance"),
    ("Deposited", 1): lambda data: decimal_string_to_minor_units(data, "amount"),
    ("Withdrawn", 1): lambda data: decimal_string_to_minor_units(data, "amount"),
}


def decimals(currency: str) -> int:
    return CURRENCIES.get(currency, 2)


def format_money(minor: int, currency: str) -> str:
    """1250, 'EUR' -> '12.50 EUR' (with thousands separators): money as staff read it."""
    places = decimals(currency)
    return f"{Decimal(minor).scaleb(-places):,.{places}f} {currency}"


# --- validation -----------------------------------------------------------------


def check_amount(amount: object, currency: str, ceiling: int = DEFAULT_AMOUNT_CEILING) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidAmount(f"The amount must be a whole number of minor units (cents), not {amount!r:.40}.")
    if amount <= 0:
        raise InvalidAmount("The amount must be greater than zero.")
    if amount >= ceiling:
        raise InvalidAmount(
            f"{format_money(amount, currency)} is too large: "
            f"the amount must be below {format_money(ceiling, currency)}."
        )
    return amount


# Characters that make text display as something other than what it is: bidirectional
# embeddings, overrides and isolates, and invisible spaces and joiners. Zero-width
# (non-)joiners, U+200C and U+200D, stay allowed: Persian and Indic names need them.
_SPOOFING = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200b\u2060\ufeff")


def check_text(value: object, what: str, max_length: int = MAX_TEXT_LENGTH) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"A {what} is required.")
    value = value.strip()
    if len(value) > max_length:
        raise InvalidInput(f"The {what} must be at most {max_length} characters.")
    if any(ord(ch) < 32 and ch not in "\t\n\r" for ch in value):
        raise InvalidInput(f"The {what} contains control characters.")
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        raise InvalidInput(f"The {what} contains a broken character (a lone UTF-16 surrogate).")
    hidden = sorted({f"U+{ord(ch):04X}" for ch in value if ch in _SPOOFING})
    if hidden:
        raise InvalidInput(
            f"The {what} contains invisible or direction-changing characters ({', '.join(hidden)}) "
            "that would make it display as something it is not; type it again without them."
        )
    return value


def check_currency(currency: object) -> str:
    if not isinstance(currency, str) or currency.upper() not in CURRENCIES:
        raise InvalidInput(f"{currency!r} is not a currency this bank handles ({', '.join(sorted(CURRENCIES))}).")
    return currency.upper()


def check_account_id(account_id: object) -> uuid.UUID:
    if isinstance(account_id, uuid.UUID):
        return account_id
    try:
        return uuid.UUID(str(account_id))
    except ValueError:
        raise AccountNotFound(f"There is no account {str(account_id)[:64]!r}.") from None


def _amount(value: object, *, zero: bool = False) -> int:
    """A stored amount: whole minor units, above zero (or zero, for an opening balance)."""
    if type(value) is not int or value < (0 if zero else 1) or value > MAX_BALANCE:
        raise ValueError(f"the amount {value!r:.40} is not a whole number of minor units in range")
    return value


# --- reading stored events -----------------------------------------------------
#
# Every page, chart, export, projection and check reads an account event's payload
# through these, after upcasting (StoredEvent.data, Event.data): a new event type
# is taught here and to the projections that care about it, nowhere else.


def amount(event_type: str, data: dict[str, Any]) -> int | None:
    """The money the event moved, in minor units (the opening balance for Opened); None if it moves none.

    Raises KeyError, TypeError or ValueError for a payload that does not hold a valid
    amount, or for an event type that is not an account's.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"{event_type} is not a bank account event")
    if event_type == "Opened":
        return _amount(data["initial_balance"], zero=True)
    if event_type in CREDITS or event_type in DEBITS:
        return _amount(data["amount"])
    return None


def money_effect(event_type: str, data: dict[str, Any]) -> int:
    """What the event did to the balance: money in is positive, money out negative, 0 for none."""
    moved = amount(event_type, data) or 0
    return -moved if event_type in DEBITS else moved


def status_after(event_type: str) -> str | None:
    """The status the event leaves the account in, or None when it leaves the status as it was."""
    return _STATUS_AFTER.get(event_type)


def counterparty(event_type: str, data: dict[str, Any]) -> uuid.UUID | None:
    """The other account of a transfer; None for other events (or a payload that names none readable)."""
    field = _COUNTERPARTY.get(event_type)
    if field is None:
        return None
    try:
        return uuid.UUID(str(data.get(field)))
    except ValueError:
        return None


def label(event_type: str) -> str:
    """The event as staff would name it."""
    return LABELS.get(event_type, str(event_type))


def direction(event_type: str) -> str:
    """ "open", "credit", "debit" or "status": how a chart or a list marks the event."""
    if event_type == "Opened":
        return "open"
    return "credit" if event_type in CREDITS else "debit" if event_type in DEBITS else "status"


def stated_reason(data: dict[str, Any], metadata: dict[str, Any] | None = None) -> str:
    """The reason, source or reference a member of staff gave for the event."""
    for source in (metadata or {}, data if isinstance(data, dict) else {}):
        for key in ("reason", "source", "reference"):
            if source.get(key):
                return str(source[key])
    return ""


# --- the aggregate --------------------------------------------------------------


class BankAccount:
    """An account as its events made it. Commands return new events; they never mutate.

    The seed's fields are its public face: `id`, `owner`, `balance`, `is_frozen`
    and `version`; `currency` and `status` (active, frozen or closed) stand beside them.

    Replay mutates a fresh instance in place (`from_events`), which keeps folding a
    long history cheap; code outside this module treats an instance as read-only.
    """

    __slots__ = ("id", "owner", "currency", "balance", "status", "version")

    def __init__(
        self,
        id: uuid.UUID | str,
        owner: str = "",
        currency: str = "",
        balance: int = 0,
        status: str = ACTIVE,
        version: int = 0,
    ) -> None:
        self.id = id if isinstance(id, uuid.UUID) else uuid.UUID(str(id))
        self.owner = owner
        self.currency = currency
        self.balance = balance
        self.status = status
        self.version = version

    @property
    def is_frozen(self) -> bool:
        return self.status == FROZEN

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BankAccount) and self.to_snapshot() == other.to_snapshot()

    def __repr__(self) -> str:
        return (
            f"BankAccount({self.id}, owner={self.owner!r}, {self.balance} {self.currency}, "
            f"{self.status}, v{self.version})"
        )

    # replay

    @classmethod
    def from_events(
        cls,
        account_id: uuid.UUID,
        events: Iterable[tuple[int, str, dict[str, Any]]],
        start: BankAccount | None = None,
    ) -> BankAccount:
        """Fold `events`, given as (stored version, event_type, current-schema payload), onto `start`.

        The account's version is the stored version of the last event folded, as
        in the seed: a version the owner quarantined is skipped, not counted.
        Raises UnreadableEvent, naming the version, for an event that is malformed or
        would break an invariant: stored rows are not trusted blindly.
        """
        account = start.copy() if start is not None else cls(account_id)
        event_type = ""
        try:
            for version, event_type, data in events:
                account._apply(version, event_type, data)
        except (KeyError, TypeError, ValueError) as error:
            reason = f"no {error}" if isinstance(error, KeyError) else str(error)
            raise UnreadableEvent(account.name, account.version, event_type, reason[:200]) from None
        return account

    def copy(self) -> BankAccount:
        return BankAccount(self.id, self.owner, self.currency, self.balance, self.status, self.version)

    def with_events(self, events: list[Event]) -> BankAccount:
        """The state after the events a command just decided."""
        pending = [(self.version + n, e.event_type, e.to_data()) for n, e in enumerate(events, start=1)]
        return BankAccount.from_events(self.id, pending, start=self)

    def _apply(self, version: int, event_type: str, data: dict[str, Any]) -> None:
        # Payloads, not event objects, and no helper calls: replaying a long history
        # stays a cheap loop. It reads payloads as `amount` and `status_after` do.
        if version <= self.version:
            raise ValueError(f"version {version} does not come after version {self.version}")
        self.version = version
        if event_type in CREDITS:
            self.balance += _amount(data["amount"])
        elif event_type in DEBITS:
            self.balance -= _amount(data["amount"])
        elif event_type == "Opened":
            if self.version != 1:
                raise ValueError("an account opens only once, at version 1")
            self.owner, self.currency = str(data["owner"]), str(data["currency"])
            self.balance, self.status = _amount(data["initial_balance"], zero=True), ACTIVE
        elif event_type in _STATUS_AFTER:
            self.status = _STATUS_AFTER[event_type]
        else:
            raise ValueError(f"{event_type} is not a bank account event")
        if not self.currency:
            raise ValueError("the account was never opened")
        if not 0 <= self.balance <= MAX_BALANCE:
            raise ValueError(
                "the balance would go below zero" if self.balance < 0 else "the balance would pass the ledger's limit"
            )

    # snapshots

    def to_snapshot(self) -> dict[str, str | int]:
        return {
            "id": str(self.id),
            "owner": self.owner,
            "currency": self.currency,
            "balance": self.balance,
            "status": self.status,
            "version": self.version,
        }

    @classmethod
    def from_snapshot(cls, state: dict[str, Any]) -> BankAccount:
        """The account a snapshot describes; ValueError when its state is not an account's shape."""
        account = cls(**state)
        fields = (account.owner, account.currency, account.balance, account.status, account.version)
        if [type(value) for value in fields] != [str, str, int, str, int] or account.status not in STATUSES:
            raise ValueError(f"a snapshot state is not a bank account's: {state!r:.200}")
        if not 0 <= account.balance <= MAX_BALANCE or account.version < 1:
            raise ValueError(f"a snapshot state is out of range: {state!r:.200}")
        return account

    # commands

    @property
    def exists(self) -> bool:
        return self.version > 0

    @staticmethod
    def open(
        account_id: uuid.UUID | str,
        *,
        owner: str,
        currency: str,
        initial_deposit: int,
        ceiling: int = DEFAULT_AMOUNT_CEILING,
    ) -> list[Event]:
        owner = check_text(owner, "owner name", MAX_OWNER_LENGTH)
        currency = check_currency(currency)
        if isinstance(initial_deposit, bool) or not isinstance(initial_deposit, int) or initial_deposit < 0:
            raise InvalidAmount("The opening deposit must be zero or a positive whole number of minor units.")
        if initial_deposit >= ceiling:
            raise InvalidAmount(
                f"{format_money(initial_deposit, currency)} is too large: "
                f"the opening deposit must be below {format_money(ceiling, currency)}."
            )
        account_id = check_account_id(account_id)
        BankAccount(account_id, owner, currency=currency)._require_room(initial_deposit)
        return [Opened(str(account_id), owner, currency, initial_deposit)]

    @property
    def name(self) -> AccountName:
        return AccountName(self.id, self.owner)

    def money(self, minor: int) -> str:
        return format_money(minor, self.currency)

    def _require_active(self, blocked: str) -> None:
        if self.status == CLOSED:
            raise AccountClosed("The account of ", self.name, f" is closed: {blocked}.")
        if self.status == FROZEN:
            raise AccountFrozen("The account of ", self.name, f" is frozen: {blocked} until a supervisor unfreezes it.")

    def _require_room(self, amount: int) -> None:
        if self.balance + amount > MAX_BALANCE:
            raise BalanceLimitExceeded(
                "The account of ",
                self.name,
                f" holds {self.money(self.balance)}; {self.money(amount)} more "
                f"would exceed the largest balance an account can hold ({self.money(MAX_BALANCE)}).",
            )

    def _require_funds(self, amount: int, what: str) -> None:
        if amount > self.balance:
            raise InsufficientFunds(
                f"Insufficient funds: balance {self.money(self.balance)}; cannot {what} {self.money(amount)} from "
                "the account of ", self.name, ".",
            )  # fmt: skip

    def deposit(self, *, amount: int, source: str, ceiling: int = DEFAULT_AMOUNT_CEILING) -> list[Event]:
        amount, source = check_amount(amount, self.currency, ceiling), check_text(source, "source")
        self._require_active("no money can be paid in")
        self._require_room(amount)
        return [Deposited(amount, source)]

    def withdraw(self, *, amount: int, reason: str, four_eyes: FourEyes,
                 ceiling: int = DEFAULT_AMOUNT_CEILING) -> list[Event]:  # fmt: skip
        amount, reason = check_amount(amount, self.currency, ceiling), check_text(reason, "reason")
        self._require_active("no money can be paid out")
        self._require_funds(amount, "withdraw")
        four_eyes.check("withdrawal", amount)
        return [Withdrawn(amount, reason)]

    def freeze(self, *, reason: str) -> list[Event]:
        reason = check_text(reason, "reason")
        if self.status == CLOSED:
            raise AccountClosed("The account of ", self.name, " is closed: it cannot be frozen.")
        if self.status == FROZEN:
            raise AccountFrozen("The account of ", self.name, " is already frozen.")
        return [Frozen(reason)]

    def unfreeze(self, *, reason: str, four_eyes: FourEyes) -> list[Event]:
        reason = check_text(reason, "reason")
        if self.status == CLOSED:
            raise AccountClosed("The account of ", self.name, " is closed: it cannot be unfrozen.")
        if self.status != FROZEN:
            raise AccountNotFrozen("The account of ", self.name, " is not frozen.")
        four_eyes.check("unfreeze")
        return [Unfrozen(reason)]

    def close(self, *, reason: str, four_eyes: FourEyes) -> list[Event]:
        reason = check_text(reason, "reason")
        if self.status == CLOSED:
            raise AccountClosed("The account of ", self.name, " is already closed.")
        if self.balance != 0:
            raise BalanceNotZero(
                "The account of ", self.name, f" still holds {self.money(self.balance)}; "
                "only an account with a zero balance can be closed.",
            )  # fmt: skip
        four_eyes.check("closing")
        return [Closed(reason)]


def transfer(
    source: BankAccount,
    target: BankAccount,
    *,
    transfer_id: uuid.UUID | str,
    amount: int,
    reference: str,
    four_eyes: FourEyes,
    ceiling: int = DEFAULT_AMOUNT_CEILING,
) -> tuple[list[Event], list[Event]]:
    """Decide a transfer: the events for the paying account and for the receiving one."""
    amount, reference = check_amount(amount, source.currency, ceiling), check_text(reference, "reference")
    if source.id == target.id:
        raise SameAccountTransfer("An account cannot transfer money to itself.")
    source._require_active("no money can be paid out")
    target._require_active("no money can be paid in")
    if source.currency != target.currency:
        raise CurrencyMismatch(
            "The account of ", source.name, f" is in {source.currency} and the account of ", target.name,
            f" in {target.currency}; a transfer needs one currency.",
        )  # fmt: skip
    source._require_funds(amount, "transfer")
    target._require_room(amount)
    four_eyes.check("transfer", amount)
    transfer_id = str(transfer_id)
    return (
        [TransferSent(transfer_id, str(target.id), amount, reference)],
        [TransferReceived(transfer_id, str(source.id), amount, reference)],
    )
