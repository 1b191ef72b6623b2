"""Four eyes: a command one member of staff asks for and another approves (maker and checker).

An approval request is an aggregate of its own, with its history in the events table
like an account's: `ApprovalRequested` (what the maker asked for and what the account
looked like then), then one of `Approved`, `Rejected`, `Cancelled` (by the maker),
`Expired` or `ApprovalFailed` (approved, but the rules refused the command by then).
Nothing moves until a checker approves; the command then runs against the account as
it is at that moment, in the same transaction as the approval.

Pure Python, like accounts.domain: the services give it the time and who is acting.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from accounts.domain import AccountName, BankAccount, DomainError, Event, check_text, format_money

REQUEST_TYPE = "ApprovalRequest"
REQUEST_SCHEMA = 1  # the snapshot shape of ApprovalRequest

PENDING, APPROVED, REJECTED, CANCELLED, EXPIRED, FAILED = (
    "pending", "approved", "rejected", "cancelled", "expired", "failed",
)  # fmt: skip
STATES = (PENDING, APPROVED, REJECTED, CANCELLED, EXPIRED, FAILED)

# The commands that can wait for approval, as staff name them.
COMMAND_NAMES = {"withdraw": "Withdrawal", "transfer": "Transfer", "close_account": "Closing",
                 "unfreeze": "Unfreezing"}  # fmt: skip


class RequestNotFound(DomainError):
    pass


class RequestNotPending(DomainError):
    """Approved, rejected, cancelled, expired or failed already: a request is decided once."""


class UnreadableRequest(DomainError):
    """A stored request event the rules cannot fold: the request cannot be trusted past it."""

    def __init__(self, request_id: uuid.UUID, version: int, reason: str) -> None:
        self.request_id, self.version = request_id, version
        super().__init__(f"Version {version} of approval request {request_id} cannot be read: {reason}. "
                         "Nothing was done; an administrator must investigate its history.")  # fmt: skip


class OwnRequest(DomainError):
    """The maker of a request cannot be its checker, whatever their roles."""


class NotTheMaker(DomainError):
    """Only the member of staff who asked can cancel a request."""


class ApprovalPending(Exception):  # noqa: N818  (an outcome, like Http404: not an error)
    """Not a refusal: the command was stored as an approval request, which waits for a second person."""

    def __init__(self, request: ApprovalRequest, account: AccountName) -> None:
        self.request, self.account = request, account
        self.parts = (f"{request.describe()} {_FROM[request.command]}the account of ", account,
                      " is waiting for a second person's approval. Nothing has been done yet.")  # fmt: skip
        super().__init__("".join(map(str, self.parts)))


_FROM = {"withdraw": "from ", "transfer": "from ", "close_account": "", "unfreeze": ""}


@dataclass(frozen=True)
class ApprovalRequested(Event):
    command: str
    arguments: dict[str, Any]  # what the command will be run with (account ids as text, amounts in minor units)
    account_id: str
    account_version: int  # the account as the maker saw it
    balance_seen: int
    currency: str
    maker: str
    reason: str
    expires_at: str  # UTC, ISO 8601


@dataclass(frozen=True)
class Approved(Event):
    checker: str


@dataclass(frozen=True)
class Rejected(Event):
    checker: str
    reason: str


@dataclass(frozen=True)
class Cancelled(Event):
    reason: str


@dataclass(frozen=True)
class Expired(Event):
    pass


@dataclass(frozen=True)
class ApprovalFailed(Event):
    checker: str
    reason: str


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls for cls in (ApprovalRequested, Approved, Rejected, Cancelled, Expired, ApprovalFailed)
}
LABELS = {
    "ApprovalRequested": "Approval requested", "Approved": "Approved", "Rejected": "Rejected",
    "Cancelled": "Request cancelled", "Expired": "Request expired", "ApprovalFailed": "Approval failed",
}  # fmt: skip
_STATE_AFTER = {"Approved": APPROVED, "Rejected": REJECTED, "Cancelled": CANCELLED, "Expired": EXPIRED,
                "ApprovalFailed": FAILED}  # fmt: skip


@dataclass
class ApprovalRequest:
    """What a request is after its events: the command it holds, who asked, and how it ended."""

    id: uuid.UUID
    version: int = 0
    command: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)
    account_id: uuid.UUID | None = None
    account_version: int = 0
    balance_seen: int = 0
    currency: str = ""
    maker: str = ""
    reason: str = ""
    expires_at: datetime | None = None
    state: str = ""
    checker: str = ""
    outcome: str = ""  # why it was rejected or cancelled, or why the approved command failed

    @property
    def exists(self) -> bool:
        return self.version > 0

    @property
    def amount(self) -> int | None:
        amount = self.arguments.get("amount")
        return amount if isinstance(amount, int) else None

    @property
    def recipient_id(self) -> uuid.UUID | None:
        recipient = self.arguments.get("to_account_id")
        return uuid.UUID(recipient) if recipient else None

    @property
    def account_ids(self) -> list[uuid.UUID]:
        """The accounts the command acts on: the account, and for a transfer the recipient."""
        assert self.account_id is not None
        return [self.account_id] + ([self.recipient_id] if self.recipient_id else [])

    def state_at(self, now: datetime) -> str:
        """The state as pages show it: a pending request past its time is expired, written or not."""
        if self.state == PENDING and self.expires_at is not None and now >= self.expires_at:
            return EXPIRED
        return self.state

    def describe(self) -> str:
        """ "Withdrawal of 20,000.00 EUR", "Closing": what the request would do, for messages."""
        name = COMMAND_NAMES.get(self.command, self.command)
        return f"{name} of {format_money(self.amount, self.currency)}" if self.amount is not None else name

    # --- deciding ---------------------------------------------------------------

    @staticmethod
    def ask(command: str, arguments: dict[str, Any], account: BankAccount, *, maker: str,
            reason: str, expires_at: datetime) -> list[Event]:  # fmt: skip
        """The request for a command the rules allow but a second person must approve."""
        if command not in COMMAND_NAMES:
            raise ValueError(f"{command!r} is not a command that waits for approval")
        return [ApprovalRequested(command, dict(arguments), str(account.id), account.version, account.balance,
                                  account.currency, maker, reason, expires_at.isoformat())]  # fmt: skip

    def _require_pending(self, now: datetime, doing: str) -> None:
        if not self.exists:
            raise RequestNotFound(f"There is no approval request {self.id}.")
        state = self.state_at(now)
        if state != PENDING:
            by = f" by {self.checker}" if self.checker and state in (APPROVED, REJECTED, FAILED) else ""
            raise RequestNotPending(f"This request was {state}{by}: it cannot be {doing} any more.")

    def approve(self, *, checker: str, now: datetime) -> list[Event]:
        self._require_pending(now, "approved")
        if checker == self.maker:
            raise OwnRequest("You asked for this command: another member of staff must approve it.")
        return [Approved(checker)]

    def fail(self, *, checker: str, refusal: DomainError) -> list[Event]:
        """Approved, but the rules refuse the command against the account as it is now."""
        return [ApprovalFailed(checker, str(refusal)[:500])]

    def reject(self, *, checker: str, reason: str, now: datetime) -> list[Event]:
        reason = check_text(reason, "reason")
        self._require_pending(now, "rejected")
        if checker == self.maker:
            raise OwnRequest("You asked for this command: cancel it rather than reject it.")
        return [Rejected(checker, reason)]

    def cancel(self, *, by: str, reason: str, now: datetime) -> list[Event]:
        reason = check_text(reason, "reason")
        self._require_pending(now, "cancelled")
        if by != self.maker:
            raise NotTheMaker(f"Only {self.maker}, who asked for this command, can cancel it.")
        return [Cancelled(reason)]

    def expire(self, *, now: datetime) -> list[Event]:
        """Expired, written down: only for a pending request past its time."""
        if self.state != PENDING or self.expires_at is None or now < self.expires_at:
            raise RequestNotPending("Only a pending request past its time expires.")
        return [Expired()]

    # --- replay -----------------------------------------------------------------

    @classmethod
    def from_events(cls, request_id: uuid.UUID, events: Any, start: ApprovalRequest | None = None) -> ApprovalRequest:
        """Fold (stored version, event type, payload) onto `start`; ValueError for what a request cannot be."""
        request = ApprovalRequest(**{**asdict(start), "arguments": dict(start.arguments)}) if start else cls(request_id)
        version = request.version
        try:
            for version, event_type, data in events:
                request._apply(version, event_type, data)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            reason = f"no {error}" if isinstance(error, KeyError) else str(error)
            raise UnreadableRequest(request.id, version, reason) from None
        return request

    def _apply(self, version: int, event_type: str, data: dict[str, Any]) -> None:
        if event_type == "ApprovalRequested":
            if self.exists:
                raise ValueError("a request is asked for once, at version 1")
            self.command, self.arguments = str(data["command"]), dict(data["arguments"])
            self.account_id = uuid.UUID(data["account_id"])
            self.account_version, self.balance_seen = int(data["account_version"]), int(data["balance_seen"])
            self.currency, self.maker, self.reason = str(data["currency"]), str(data["maker"]), str(data["reason"])
            self.expires_at, self.state = datetime.fromisoformat(data["expires_at"]), PENDING
        elif event_type in _STATE_AFTER:
            if self.state != PENDING:
                raise ValueError(f"a request that is {self.state or 'not asked for'} cannot be {event_type}")
            self.state = _STATE_AFTER[event_type]
            self.checker = str(data.get("checker", ""))
            self.outcome = str(data.get("reason", ""))
        else:
            raise ValueError(f"{event_type!r} is not an approval request event")
        self.version = version

    def to_snapshot(self) -> dict[str, Any]:
        state = asdict(self)
        state.update(id=str(self.id), account_id=str(self.account_id) if self.account_id else None,
                     expires_at=self.expires_at.isoformat() if self.expires_at else None)  # fmt: skip
        return state

    @classmethod
    def from_snapshot(cls, state: dict[str, Any]) -> ApprovalRequest:
        fields = dict(state)
        fields["id"] = uuid.UUID(fields["id"])
        fields["account_id"] = uuid.UUID(fields["account_id"]) if fields.get("account_id") else None
        fields["expires_at"] = datetime.fromisoformat(fields["expires_at"]) if fields.get("expires_at") else None
        return cls(**fields)
