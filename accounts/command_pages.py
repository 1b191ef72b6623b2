"""The commands staff run from an account's page: their forms, their review step, their messages.

Views stay thin: they check the permission and the form, then ask here whether
the command needs a review, what it would do (a preview the domain decides,
storing nothing), and how to tell staff what was done or refused, in money with
its currency and with every account named by its owner and linked.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from accounts import domain, services
from accounts.domain import WAIVED, AccountName, BankAccount
from accounts.forms import DepositForm, ReasonForm, TransferForm, WithdrawForm
from accounts.money import threshold

Parts = Iterable[str | AccountName]


@dataclass(frozen=True)
class Command:
    label: str
    form: type
    permission: str
    run: Callable[[uuid.UUID, dict[str, Any], str], list[BankAccount]]  # (account id, data, key) -> states after
    decide: Callable[[BankAccount, dict[str, Any], BankAccount | None], list[BankAccount]]  # the preview's states
    done: Callable[[dict[str, Any], list[BankAccount]], list[str | AccountName]]  # what the success message says
    always_reviewed: bool = False


def _ceiling() -> int:
    ceiling: int = settings.ACCOUNT_AMOUNT_CEILING
    return ceiling


def _after(account: BankAccount, events: list[domain.Event]) -> list[BankAccount]:
    return [account.with_events(events)]


def _transfer_preview(account: BankAccount, data: dict[str, Any], recipient: BankAccount | None) -> list[BankAccount]:
    if recipient is None:
        raise domain.AccountNotFound(f"There is no account {data['to_account']}.")
    sent, received = domain.transfer(account, recipient, transfer_id=uuid.uuid4(), amount=data["amount"],
                                     reference=data["reference"], four_eyes=WAIVED, ceiling=_ceiling())  # fmt: skip
    return [account.with_events(sent), recipient.with_events(received)]


def _balance(state: BankAccount) -> str:
    return f"; balance {state.money(state.balance)}."


COMMANDS = {
    "deposit": Command(
        "Deposit", DepositForm, "accounts.deposit",
        lambda a, d, k: [services.deposit(account_id=a, amount=d["amount"], source=d["source"], idempotency_key=k)],
        lambda acc, d, _: _after(acc, acc.deposit(amount=d["amount"], source=d["source"], ceiling=_ceiling())),
        lambda d, s: [f"Deposited {s[0].money(d['amount'])} into the account of ", s[0].name, _balance(s[0])],
    ),
    "withdraw": Command(
        "Withdraw", WithdrawForm, "accounts.withdraw",
        lambda a, d, k: [services.withdraw(account_id=a, amount=d["amount"], reason=d["reason"], idempotency_key=k)],
        lambda acc, d, _: _after(acc, acc.withdraw(amount=d["amount"], reason=d["reason"], four_eyes=WAIVED,
                                                          ceiling=_ceiling())),
        lambda d, s: [f"Withdrew {s[0].money(d['amount'])} from the account of ", s[0].name, _balance(s[0])],
    ),
    "transfer": Command(
        "Transfer", TransferForm, "accounts.transfer",
        lambda a, d, k: list(services.transfer(
            from_account_id=a, to_account_id=d["to_account"], amount=d["amount"], reference=d["reference"],
            idempotency_key=k,
        )),
        _transfer_preview,
        lambda d, s: [f"Transferred {s[0].money(d['amount'])} from the account of ", s[0].name, " to the account of ",
                      s[1].name, _balance(s[0])],
        always_reviewed=True,
    ),
    "freeze": Command(
        "Freeze", ReasonForm, "accounts.freeze_account",
        lambda a, d, k: [services.freeze(account_id=a, reason=d["reason"], idempotency_key=k)],
        lambda acc, d, _: _after(acc, acc.freeze(reason=d["reason"])),
        lambda d, s: ["Froze the account of ", s[0].name, ": no money can be paid in or out until it is unfrozen."],
        always_reviewed=True,
    ),
    "unfreeze": Command(
        "Unfreeze", ReasonForm, "accounts.unfreeze_account",
        lambda a, d, k: [services.unfreeze(account_id=a, reason=d["reason"], idempotency_key=k)],
        lambda acc, d, _: _after(acc, acc.unfreeze(reason=d["reason"], four_eyes=WAIVED)),
        lambda d, s: ["Unfroze the account of ", s[0].name, ": it is active again."],
        always_reviewed=True,
    ),
    "close": Command(
        "Close", ReasonForm, "accounts.close_account",
        lambda a, d, k: [services.close_account(account_id=a, reason=d["reason"], idempotency_key=k)],
        lambda acc, d, _: _after(acc, acc.close(reason=d["reason"], four_eyes=WAIVED)),
        lambda d, s: ["Closed the account of ", s[0].name, ": nothing more can happen to it."],
        always_reviewed=True,
    ),
}  # fmt: skip

# Which forms make sense in each status; the domain still checks every rule.
OFFERED = {
    "active": ["deposit", "withdraw", "transfer", "freeze", "close"],
    "frozen": ["unfreeze", "close"],
    "closed": [],
}


def review_from(currency: str) -> int:
    """The amount (minor units) from which a deposit or withdrawal in `currency` is reviewed first."""
    return threshold(settings.REVIEW_AT, settings.REVIEW_AT_OTHERS, currency)


def needs_review(command: Command, account: BankAccount, data: dict[str, Any]) -> bool:
    return command.always_reviewed or data.get("amount", 0) >= review_from(account.currency)


@dataclass(frozen=True)
class Preview:
    """What a command would do, decided by the domain on the account as it is now; nothing stored."""

    before: BankAccount
    after: BankAccount
    recipient: BankAccount | None = None
    recipient_after: BankAccount | None = None


def preview(command: Command, account: BankAccount, data: dict[str, Any]) -> Preview:
    """Raises the DomainError the command itself would meet now."""
    recipient = services.get_account(data["to_account"]) if "to_account" in data else None
    states = command.decide(account, data, recipient)
    return Preview(account, states[0], recipient, states[1] if len(states) > 1 else None)


def linked(parts: Parts) -> SafeString:
    """A message's parts as HTML: text escaped, each account its owner's name linking to its page."""
    return format_html_join("", "{}", ((_part(part),) for part in parts))


def _part(part: str | AccountName) -> str | SafeString:
    if isinstance(part, AccountName):
        return format_html('<a href="{}">{}</a>', reverse("accounts:detail", args=[part.id]), str(part))
    return part


def refusal(label: str, error: domain.DomainError) -> list[str | AccountName]:
    said = "Nothing was done" in str(error)  # an unreadable history says it, with what must happen next
    return [f"{label} refused: ", *error.parts, *([] if said else [" Nothing was done."])]


def for_the_session(parts: Parts) -> list[Any]:
    """A message's parts as the session keeps them (JSON): text, and accounts as id and owner."""
    return [{"account": str(p.id), "owner": p.owner} if isinstance(p, AccountName) else str(p) for p in parts]


def from_the_session(kept: list[Any]) -> SafeString:
    """A message the session kept, as HTML: escaped and linked again here, never trusted as markup
    (anyone holding the application's database role can write the sessions table)."""
    parts: list[str | AccountName] = []
    for part in kept if isinstance(kept, list) else []:
        try:
            parts.append(
                AccountName(uuid.UUID(part["account"]), str(part["owner"])) if isinstance(part, dict) else str(part)
            )
        except (KeyError, TypeError, ValueError):
            continue
    return linked(parts)
