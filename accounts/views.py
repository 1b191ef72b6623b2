"""Staff pages. Views check permissions and forms; services decide; selectors read."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from functools import wraps
from typing import Callable

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import selectors, services
from accounts.charts import balance_chart
from accounts.domain import EVENT_TYPES, STATUSES, DomainError
from accounts.forms import (
    AccountSearchForm,
    AsOfForm,
    AuditFilterForm,
    DepositForm,
    MonthForm,
    OpenAccountForm,
    ReasonForm,
    TransferForm,
    WithdrawForm,
)
from accounts.money import format_money
from accounts.money import to_decimal_string as _decimal


def staff_permission(permission: str):
    """Anonymous visitors go to the login page; staff without `permission` get a 403."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not request.user.has_perm(permission):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


# --- commands on one account ----------------------------------------------------------


@dataclass(frozen=True)
class Command:
    label: str
    form: type
    permission: str
    run: Callable  # (account_id, cleaned_data, idempotency_key) -> BankAccount | (BankAccount, BankAccount)
    describe: Callable  # (cleaned_data, currency) -> what the success message says was done


COMMANDS = {
    "deposit": Command(
        "Deposit", DepositForm, "accounts.deposit",
        lambda a, d, k: services.deposit(account_id=a, amount=d["amount"], source=d["source"], idempotency_key=k),
        lambda d, c: f"Deposited {format_money(d['amount'], c)}.",
    ),
    "withdraw": Command(
        "Withdraw", WithdrawForm, "accounts.withdraw",
        lambda a, d, k: services.withdraw(account_id=a, amount=d["amount"], reason=d["reason"], idempotency_key=k),
        lambda d, c: f"Withdrew {format_money(d['amount'], c)}.",
    ),
    "transfer": Command(
        "Transfer", TransferForm, "accounts.transfer",
        lambda a, d, k: services.transfer(
            from_account_id=a, to_account_id=d["to_account"], amount=d["amount"], reference=d["reference"],
            idempotency_key=k,
        )[0],
        lambda d, c: f"Transferred {format_money(d['amount'], c)} to account {d['to_account']}.",
    ),
    "freeze": Command(
        "Freeze", ReasonForm, "accounts.freeze_account",
        lambda a, d, k: services.freeze(account_id=a, reason=d["reason"], idempotency_key=k),
        lambda d, c: "Account frozen.",
    ),
    "unfreeze": Command(
        "Unfreeze", ReasonForm, "accounts.unfreeze_account",
        lambda a, d, k: services.unfreeze(account_id=a, reason=d["reason"], idempotency_key=k),
        lambda d, c: "Account unfrozen.",
    ),
    "close": Command(
        "Close", ReasonForm, "accounts.close_account",
        lambda a, d, k: services.close_account(account_id=a, reason=d["reason"], idempotency_key=k),
        lambda d, c: "Account closed.",
    ),
}  # fmt: skip


# Which forms make sense in each status; the domain still checks every rule.
OFFERED = {
    "active": ["deposit", "withdraw", "transfer", "freeze", "close"],
    "frozen": ["unfreeze", "close"],
    "closed": [],
}


def _forms_for(user, account, bound: dict | None = None) -> dict:
    """The command forms this member of staff may use on the account as it stands."""
    forms = {}
    for name in OFFERED[account.status]:
        command = COMMANDS[name]
        if user.has_perm(command.permission):
            forms[name] = (bound or {}).get(name) or command.form(account=account, prefix=name)
    return forms


@require_POST
def account_command(request, account_id, command):
    spec = COMMANDS.get(command)
    if spec is None:
        raise Http404("No such command.")
    if not request.user.is_authenticated:
        return redirect_to_login(reverse("accounts:detail", args=[account_id]))
    if not request.user.has_perm(spec.permission):
        raise PermissionDenied
    account = services.get_account(account_id)
    if account is None:
        raise Http404("No such account.")
    form = spec.form(request.POST, account=account, prefix=command)
    if not form.is_valid():
        messages.error(request, f"{spec.label}: please correct the fields marked below. Nothing was done.")
        return _account_page(request, account_id, bound={command: form}, status=400)
    data = form.cleaned_data
    try:
        after = spec.run(account.id, data, data["idempotency_key"])
    except DomainError as error:
        messages.error(request, f"{spec.label} refused: {error} Nothing was done.")
        return _account_page(request, account_id, bound={command: form}, status=409)
    messages.success(request, spec.describe(data, account.currency))
    _tell_what_changed(request, account, data["expected_version"], after)
    return redirect("accounts:detail", account_id=account.id)


def _tell_what_changed(request, account, expected_version: int, after) -> None:
    """If others changed the account after the form was rendered, say what they did.

    `account` is the state the command was checked against; `after`, the state it left.
    """
    if expected_version >= account.version:
        return
    changes = selectors.events_between(account.id, expected_version, account.version)
    summary = "; ".join(_describe(entry, account.currency) for entry in changes[:5])
    more = f" and {len(changes) - 5} more" if len(changes) > 5 else ""
    messages.warning(
        request,
        f"This account had changed since you opened the page ({len(changes)} event"
        f"{'s' if len(changes) != 1 else ''}: {summary}{more}). Your command was checked and applied "
        f"against the current state; the balance is now {format_money(after.balance, account.currency)}.",
    )


def _describe(entry, currency: str) -> str:
    amount = entry.data.get("amount", entry.data.get("initial_balance"))
    who = (entry.event.metadata or {}).get("actor", "someone")
    money = f" {format_money(amount, currency)}" if amount is not None else ""
    return f"{entry.event.event_type}{money} by {who}"


# --- pages -----------------------------------------------------------------------------


@require_GET
@staff_permission("accounts.view_account")
def dashboard(request):
    latest, counts = selectors.latest_events(), selectors.status_counts()
    return render(
        request,
        "accounts/dashboard.html",
        {
            "counts": {status: counts.get(status, 0) for status in STATUSES},
            "totals": selectors.totals_by_currency(),
            "latest": latest,
            "accounts": selectors.accounts_by_id(e.aggregate_id for e in latest),
        },
    )


@require_GET
@staff_permission("accounts.view_account")
def account_list(request):
    form = AccountSearchForm(request.GET)
    data = form.cleaned_data if form.is_valid() else {}
    query, status, page = data.get("q") or "", data.get("status") or "", data.get("page") or 1
    results = selectors.search_accounts(query=query, status=status, page=page) if form.is_valid() else None
    return render(
        request,
        "accounts/account_list.html",
        {"form": form, "page": results, "page_number": page, "query": query, "status": status, "statuses": STATUSES},
    )


@require_GET
@staff_permission("accounts.view_account")
def account_detail(request, account_id):
    return _account_page(request, account_id)


def _account_page(request, account_id, *, bound: dict | None = None, status: int = 200):
    current = services.get_account(account_id)
    if current is None:
        raise Http404("No such account.")
    picker = AsOfForm(request.GET or None)
    account, past = current, False
    if picker.is_valid() and (picker.cleaned_data["as_of"] or picker.cleaned_data["version"]):
        version = picker.cleaned_data["version"]
        if picker.cleaned_data["as_of"]:
            at_time = selectors.version_at(current.id, picker.cleaned_data["as_of"])
            version = at_time if version is None else min(version, at_time)
        account = services.get_account(account_id, version=min(version, current.version))
        past = True
    try:
        before = int(request.GET["before"]) if "before" in request.GET else None
    except ValueError:
        before = None
    history = (
        selectors.account_history(current.id, up_to_version=account.version, before_version=before)
        if account
        else None
    )
    month_form = MonthForm(request.GET)
    month = (month_form.cleaned_data["month"] if month_form.is_valid() else None) or _this_month()
    return render(
        request,
        "accounts/account_detail.html",
        {
            "statement": selectors.month_statement(current.id, month),
            "month_form": month_form,
            "account": account,
            "current": current,
            "past": past,
            "picker": picker,
            "history": history,
            "chart": balance_chart(selectors.balance_points(account)) if account else None,
            "forms": {} if past else _forms_for(request.user, current, bound),
            "commands": COMMANDS,
        },
        status=status,
    )


@require_http_methods(["GET", "POST"])
@staff_permission("accounts.open_account")
def open_account(request):
    form = OpenAccountForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            account = services.open_account(
                owner=data["owner"], initial_deposit=data["initial_deposit"], currency=data["currency"],
                idempotency_key=data["idempotency_key"],
            )  # fmt: skip
        except DomainError as error:
            messages.error(request, f"The account was not opened: {error}")
        else:
            messages.success(request, f"Opened an account for {account.owner}.")
            return redirect("accounts:detail", account_id=account.id)
    status = 400 if request.method == "POST" else 200
    return render(request, "accounts/open_account.html", {"form": form}, status=status)


def _this_month():
    return timezone.now().date().replace(day=1)


@require_GET
@staff_permission("accounts.view_account")
def statement_csv(request, account_id):
    account = services.get_account(account_id)
    if account is None:
        raise Http404("No such account.")
    form = MonthForm(request.GET)
    month = (form.cleaned_data["month"] if form.is_valid() else None) or _this_month()
    statement = selectors.month_statement(account.id, month)
    writer = csv.writer(_Echo())
    header = ["day", "currency", "opening_balance", "credits", "debits", "closing_balance", "events"]
    lines = [writer.writerow(header)] + [
        writer.writerow([
            d.day.isoformat(), d.currency, _decimal(d.opening_balance, d.currency), _decimal(d.credits, d.currency),
            _decimal(d.debits, d.currency), _decimal(d.closing_balance, d.currency), d.event_count,
        ])  # fmt: skip
        for d in statement.days
    ]
    return StreamingHttpResponse(
        lines,
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="statement-{account.id}-{month:%Y-%m}.csv"'},
    )


# --- audit log ---------------------------------------------------------------------------


def _audit_filters(request):
    form = AuditFilterForm(request.GET, event_types=sorted(EVENT_TYPES))
    if not form.is_valid():
        return form, None
    data = form.cleaned_data
    return form, selectors.AuditFilters(
        event_type=data["event_type"], actor=data["actor"].strip(), account=data["account"],
        correlation_id=data["correlation_id"].strip(), since=data["since"], until=data["until"],
    )  # fmt: skip


@require_GET
@staff_permission("eventstore.view_event")
def audit_log(request):
    form, filters = _audit_filters(request)
    page = None
    if filters is not None:
        try:
            before = int(request.GET["before"]) if request.GET.get("before") else None
        except ValueError:
            before = None
        page = selectors.audit_page(filters, before_id=before)
    query = request.GET.copy()
    query.pop("before", None)
    return render(
        request,
        "accounts/audit_log.html",
        {
            "form": form,
            "page": page,
            "query": query.urlencode(),
            "accounts": selectors.accounts_by_id(e.aggregate_id for e in page.items) if page else {},
        },
    )


class _Echo:
    def write(self, value):
        return value


CSV_COLUMNS = ["id", "created_at", "aggregate_id", "version", "event_type", "actor", "correlation_id", "data", "metadata"]


@require_GET
@staff_permission("eventstore.view_event")
def audit_log_csv(request):
    """Stream every filtered event as CSV, through a server-side cursor: memory stays flat."""
    form, filters = _audit_filters(request)
    if filters is None:
        messages.error(request, "The filters are not valid; nothing was exported.")
        return redirect(f"{reverse('accounts:audit')}?{request.GET.urlencode()}")
    events = selectors.audit_events(filters).iterator(chunk_size=2000)
    writer = csv.writer(_Echo())

    def rows():
        yield writer.writerow(CSV_COLUMNS)
        for event in events:
            metadata = event.metadata or {}
            yield writer.writerow([
                event.id, event.created_at.isoformat(), event.aggregate_id, event.version, event.event_type,
                _csv_safe(metadata.get("actor", "")), _csv_safe(metadata.get("correlation_id", "")),
                _csv_safe(json.dumps(event.event_data, sort_keys=True)), _csv_safe(json.dumps(metadata, sort_keys=True)),
            ])  # fmt: skip

    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    return StreamingHttpResponse(
        rows(),
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="audit-log-{stamp}.csv"'},
    )


def _csv_safe(value) -> str:
    """Keep spreadsheet programs from running a cell that starts like a formula."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
