"""Staff pages. Views check permissions and forms; services decide; selectors read."""

from __future__ import annotations

import csv
import itertools
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError
from django.http import Http404, HttpResponseBadRequest, QueryDict, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import selectors, services
from accounts.charts import balance_chart
from accounts.domain import EVENT_TYPES, STATUSES, BankAccount, DomainError, label
from accounts.domain import amount as amount_moved
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

logger = logging.getLogger(__name__)


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


# --- keys bound to the page -------------------------------------------------------------
#
# A page with command forms carries a token in its address (?form=...), and each
# form's idempotency key is made from it. The browser's Back returns to that same
# address, so whatever it shows there (the page from its back-forward cache, or
# one rendered again with the values it restores) submits the same keys: a second
# submit is answered with what the first one did and stores nothing.

FORM_TOKEN = "form"


def _form_token(request) -> str | None:
    try:
        return str(uuid.UUID(request.GET.get(FORM_TOKEN, "")))
    except ValueError:
        return None


def _fresh_form_address(path: str, query: QueryDict | None = None) -> str:
    query = query.copy() if query is not None else QueryDict(mutable=True)
    query[FORM_TOKEN] = str(uuid.uuid4())
    return f"{path}?{query.urlencode()}"


def _command_key(token: str, command: str) -> str:
    return f"{token}:{command}"


def _token_of(key: str) -> str:
    """The page token a submitted command key was made from (a fresh one if it was not ours)."""
    token = key.rsplit(":", 1)[0]
    try:
        return str(uuid.UUID(token))
    except ValueError:
        return str(uuid.uuid4())


def _forms_for(user, account, token: str, bound: dict | None = None) -> tuple[dict, dict]:
    """The command forms this member of staff may use on the account as it stands, and those
    this page already submitted (name -> what that submit did)."""
    offered = [name for name in OFFERED[account.status] if user.has_perm(COMMANDS[name].permission)]
    keys = {name: _command_key(token, name) for name in offered}
    submitted = services.already_done(keys.values())
    forms, done = {}, {}
    for name in offered:
        if keys[name] in submitted and name not in (bound or {}):
            done[name] = _what_it_did(account, submitted[keys[name]])
            continue
        forms[name] = (bound or {}).get(name) or COMMANDS[name].form(
            account=account, prefix=name, initial={"idempotency_key": keys[name]}
        )
    return forms, done


def _what_it_did(account, states) -> str:
    version = next((state.version for state in states if state.id == account.id), None)
    if version is None:
        return "done"
    events = selectors.events_between(account.id, version - 1, version)
    return "; ".join(_describe(event, account.currency) for event in events) + f", version {version}"


@require_POST
def account_command(request, account_id, command):
    spec = COMMANDS.get(command)
    if spec is None:
        raise Http404("No such command.")
    if not request.user.is_authenticated:
        return redirect_to_login(reverse("accounts:detail", args=[account_id]))
    if not request.user.has_perm(spec.permission):
        raise PermissionDenied
    account, problem = services.last_readable(account_id)
    if problem is not None:
        messages.error(request, f"{spec.label} refused: {problem}")
        return redirect(_fresh_form_address(reverse("accounts:detail", args=[account_id])))
    if account is None:
        raise Http404("No such account.")
    form = spec.form(request.POST, account=account, prefix=command)
    token = _token_of(request.POST.get(f"{command}-idempotency_key", ""))
    if not form.is_valid():
        messages.error(request, f"{spec.label}: please correct the fields marked below. Nothing was done.")
        return _account_page(request, account_id, token=token, bound={command: form}, status=400)
    data = form.cleaned_data
    try:
        with services.outcome() as seen:
            after = spec.run(account.id, data, data["idempotency_key"])
    except DomainError as error:
        messages.error(request, f"{spec.label} refused: {error} Nothing was done.")
        return _account_page(request, account_id, token=token, bound={command: form}, status=409)
    except services.ConcurrencyConflict:
        messages.error(
            request,
            f"{spec.label} refused: the account kept changing while your command was being decided "
            "(others are working on it). Nothing was done; try again.",
        )
        return _account_page(request, account_id, token=token, bound={command: form}, status=409)
    if seen.replayed:
        messages.info(
            request,
            f"Already done: {spec.describe(data, account.currency)} This form had been submitted before; "
            "nothing new was stored.",
        )
    else:
        messages.success(request, spec.describe(data, account.currency))
        _tell_what_changed(request, account, data["expected_version"], after)
    return redirect(_fresh_form_address(reverse("accounts:detail", args=[account.id])))


STALE_EVENTS_SHOWN = 5


def _tell_what_changed(request, account, expected_version: int, after) -> None:
    """If others changed the account after the form was rendered, say what they did.

    `account` is the state the command was checked against; `after`, the state it left.
    """
    if expected_version >= account.version:
        return
    # Versions have no gaps, so the count needs no query; only the ones named are loaded
    # (a form claiming version 0 of a 300,000-event account must not load its history).
    count = account.version - expected_version
    shown = selectors.events_between(account.id, expected_version, account.version, limit=STALE_EVENTS_SHOWN)
    summary = "; ".join(_describe(event, account.currency) for event in shown)
    more = f" and {count - len(shown)} more" if count > len(shown) else ""
    messages.warning(
        request,
        f"This account had changed since you opened the page ({count} event"
        f"{'s' if count != 1 else ''}: {summary}{more}). Your command was checked and applied "
        f"against the current state; the balance is now {format_money(after.balance, account.currency)}.",
    )


def _describe(event, currency: str) -> str:
    try:
        moved = amount_moved(event.event_type, event.data)
    except (KeyError, TypeError, ValueError):  # unreadable: the page's integrity warning says so
        moved = None
    who = (event.metadata or {}).get("actor", "someone")
    money = f" {format_money(moved, currency)}" if moved is not None else ""
    return f"{label(event.event_type)}{money} by {who}"


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
            "integrity": selectors.integrity_status(),
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
    token = _form_token(request)
    if token is None and not (request.GET.get("as_of") or request.GET.get("version")):
        return redirect(_fresh_form_address(request.path, request.GET))
    return _account_page(request, account_id, token=token or str(uuid.uuid4()))


def _account_page(request, account_id, *, token: str, bound: dict | None = None, status: int = 200):
    current, problem = services.last_readable(account_id)
    if current is None and problem is not None:
        current = BankAccount(problem.account_id)  # even its opening cannot be read
    if current is None:
        raise Http404("No such account.")
    picker = AsOfForm(request.GET or None)
    account, past = (current if current.exists else None), False
    if picker.is_valid() and (picker.cleaned_data["as_of"] or picker.cleaned_data["version"]):
        version = min(picker.cleaned_data["version"] or current.version, current.version)
        account = services.get_account(account_id, version=version, as_of=picker.cleaned_data["as_of"])
        past = True
    try:
        before = int(request.GET["before"]) if "before" in request.GET else None
    except ValueError:
        before = None
    history = (
        selectors.account_history(current.id, up_to_version=account.version, before_version=before) if account else None
    )
    month_form = MonthForm(request.GET)
    month = (month_form.cleaned_data["month"] if month_form.is_valid() else None) or _this_month()
    forms, done = ({}, {}) if past or problem else _forms_for(request.user, current, token, bound)
    return render(
        request,
        "accounts/account_detail.html",
        {
            "statement": selectors.month_statement(current.id, month),
            "month_form": month_form,
            "account": account,
            "current": current,
            "problem": problem,
            "past": past,
            "picker": picker,
            "history": history,
            "chart": balance_chart(selectors.balance_points(account)) if account else None,
            "forms": forms,
            "done": done,
            "commands": COMMANDS,
        },
        status=status,
    )


@require_http_methods(["GET", "POST"])
@staff_permission("accounts.open_account")
def open_account(request):
    if request.method == "GET":
        token = _form_token(request)
        if token is None:
            return redirect(_fresh_form_address(request.path))
        opened = services.already_done([token]).get(token)
        form = None if opened else OpenAccountForm(initial={"idempotency_key": token})
        return render(request, "accounts/open_account.html", {"form": form, "opened": opened and opened[0]})
    form = OpenAccountForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            with services.outcome() as seen:
                account = services.open_account(
                    owner=data["owner"], initial_deposit=data["initial_deposit"], currency=data["currency"],
                    idempotency_key=data["idempotency_key"],
                )  # fmt: skip
        except DomainError as error:
            messages.error(request, f"The account was not opened: {error} Nothing was done.")
        else:
            if seen.replayed:
                messages.info(
                    request,
                    f"Already done: an account was opened for {account.owner} by this form before; "
                    "nothing new was stored.",
                )
            else:
                messages.success(request, f"Opened an account for {account.owner}.")
            return redirect(_fresh_form_address(reverse("accounts:detail", args=[account.id])))
    return render(request, "accounts/open_account.html", {"form": form}, status=400)


def _this_month():
    return timezone.now().date().replace(day=1)


@require_GET
@staff_permission("accounts.view_account")
def statement_csv(request, account_id):
    account, _ = services.last_readable(account_id)
    if account is None:
        raise Http404("No such account.")
    form = MonthForm(request.GET)
    if not form.is_valid():
        return HttpResponseBadRequest(
            # An ErrorList yields its messages as text (the stubs allow ValidationErrors too).
            " ".join(map(str, form.errors["month"])) + " Nothing was exported.",
            content_type="text/plain; charset=utf-8",
        )
    month = form.cleaned_data["month"] or _this_month()
    statement = selectors.month_statement(account.id, month)
    writer = csv.writer(_Echo())
    header = ["day", "currency", "opening_balance", "credits", "debits", "closing_balance", "events"]
    lines = [writer.writerow(header)] + [
        writer.writerow(
            [
                d.day.isoformat(),
                d.currency,
                _decimal(d.opening_balance, d.currency),
                _decimal(d.credits, d.currency),
                _decimal(d.debits, d.currency),
                _decimal(d.closing_balance, d.currency),
                d.event_count,
            ]
        )  # fmt: skip
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


CSV_COLUMNS = [
    "id",
    "created_at",
    "aggregate_id",
    "version",
    "event_type",
    "actor",
    "correlation_id",
    "data",
    "metadata",
]


CSV_CHUNK = 2000  # rows per fetch


@require_GET
@staff_permission("eventstore.view_event")
def audit_log_csv(request):
    """Stream every filtered event as CSV, through a server-side cursor: memory stays flat.

    The first rows are read before the response starts, so a failure there is an
    error page, not an empty file that looks like "no events". A failure once
    rows have gone out ends the file with a line saying it is incomplete.
    """
    form, filters = _audit_filters(request)
    if filters is None:
        messages.error(request, "The filters are not valid; nothing was exported.")
        return redirect(f"{reverse('accounts:audit')}?{request.GET.urlencode()}")
    events = selectors.audit_events(filters)
    try:
        head = list(events[:CSV_CHUNK])
    except DatabaseError:
        logger.exception("audit CSV export failed before its first row")
        return render(request, "accounts/export_failed.html", status=503)
    writer = csv.writer(_Echo())

    def rows():
        yield writer.writerow(CSV_COLUMNS)
        written = 0
        rest = events.filter(id__lt=head[-1].id).iterator(chunk_size=CSV_CHUNK) if len(head) == CSV_CHUNK else ()
        try:
            for event in itertools.chain(head, rest):
                yield _audit_row(writer, event)
                written += 1
        except DatabaseError:
            logger.exception("audit CSV export failed after %d rows", written)
            yield writer.writerow([f"# INCOMPLETE EXPORT: the database failed after {written} rows; "
                                   "this file is not the whole log. Export again."])  # fmt: skip

    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    return StreamingHttpResponse(
        rows(),
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="audit-log-{stamp}.csv"'},
    )


def _audit_row(writer, event) -> str:
    metadata = event.metadata or {}
    return writer.writerow([
        event.id, event.created_at.isoformat(), event.aggregate_id, event.version, event.event_type,
        _csv_safe(metadata.get("actor", "")), _csv_safe(metadata.get("correlation_id", "")),
        _csv_safe(json.dumps(event.data, sort_keys=True)), _csv_safe(json.dumps(metadata, sort_keys=True)),
    ])  # fmt: skip


def _csv_safe(value) -> str:
    """Keep spreadsheet programs from running a cell that starts like a formula."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
