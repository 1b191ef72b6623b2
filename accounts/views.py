"""Staff pages. Views check permissions and forms; services decide; selectors read."""

from __future__ import annotations

import logging
import uuid
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import selectors, services
from accounts.approvals import ApprovalPending
from accounts.charts import balance_chart
from accounts.command_pages import (
    COMMANDS,
    OFFERED,
    Parts,
    for_the_session,
    from_the_session,
    linked,
    needs_review,
    preview,
    refusal,
)  # fmt: skip
from accounts.domain import (
    CURRENCIES,
    EVENT_TYPES,
    STATUSES,
    BankAccount,
    DomainError,
    label,
)
from accounts.domain import amount as amount_moved
from accounts.forms import AccountSearchForm, AsOfForm, AuditFilterForm, MonthForm, OpenAccountForm
from accounts.money import format_money

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


def csrf_failure(request, reason=""):
    """A form whose CSRF check failed (an expired session, a page kept open too long, another
    site's form): say that nothing was done and lead back, instead of Django's technical page."""
    referer = request.META.get("HTTP_REFERER", "")
    host, https = request.get_host(), request.is_secure()
    safe = url_has_allowed_host_and_scheme(referer, allowed_hosts={host}, require_https=https)
    page = urlsplit(referer)
    back = f"{page.path}?{page.query}" if safe and page.path else reverse("accounts:dashboard")
    logger.warning("CSRF check failed for %s: %s", request.path, reason)
    return render(request, "403_csrf.html", {"back": back}, status=403)


# --- commands on one account ----------------------------------------------------------


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


# What a form sent back for its fields says at its top (the summary's heading says nothing was done).
CORRECT_THE_FIELDS = "Please correct the fields marked below."


def one_command_on_one_account(view):
    """For the views of one command on one account: the command (404 if none), the login and the
    command's permission, and the account as its history can be read (a refusal if it cannot)."""

    @wraps(view)
    def wrapped(request, account_id, command):
        spec = COMMANDS.get(command)
        if spec is None:
            raise Http404("No such command.")
        if not request.user.is_authenticated:
            return redirect_to_login(reverse("accounts:detail", args=[account_id]))
        if not request.user.has_perm(spec.permission):
            raise PermissionDenied
        account, problem = services.last_readable(account_id)
        if problem is not None:
            messages.error(request, linked(refusal(spec.label, problem)))
            return redirect(_fresh_form_address(reverse("accounts:detail", args=[account_id])))
        if account is None:
            raise Http404("No such account.")
        return view(request, spec, account, command)

    return wrapped


@require_POST
@one_command_on_one_account
def account_command(request, spec, account, command):
    """Check the form; show the review step where one is due; run the command; go back to the account page.

    Whatever happens, the browser ends on the account page's address (a refused or
    invalid form comes back there with its values and errors), so reloading it never
    posts again. Only the review step is rendered at this address, and it stores nothing.
    """
    form = spec.form(request.POST, account=account, prefix=command)
    if not form.is_valid():
        return _back_to_form(request, account, command, form, [CORRECT_THE_FIELDS])
    if request.POST.get(f"{command}-change"):
        return _back_to_form(request, account, command, form)
    data = form.cleaned_data
    token = _token_of(data["idempotency_key"])
    try:
        if needs_review(spec, account, data) and not request.POST.get(f"{command}-confirmed"):
            preview(spec, account, data)  # a command the rules refuse goes back to its form at once
            request.session[_review_key(token, command)] = _kept(form, command)
            return redirect(f"{reverse('accounts:review', args=[account.id, command])}?{FORM_TOKEN}={token}")
        with services.outcome() as seen:
            states = spec.run(account.id, data, data["idempotency_key"])
    except ApprovalPending as pending:
        request.session.pop(_review_key(token, command), None)
        messages.info(request, format_html("{} <a href=\"{}\">See the request</a>.", linked(pending.parts),
                                           reverse("accounts:approval", args=[pending.request.id])))  # fmt: skip
        return redirect(_fresh_form_address(reverse("accounts:detail", args=[account.id])))
    except DomainError as error:
        return _back_to_form(request, account, command, form, refusal(spec.label, error))
    except services.ConcurrencyConflict:
        return _back_to_form(request, account, command, form, [f"{spec.label} refused: the account kept changing "
                             "while your command was being decided (others are working on it). Nothing was done; "
                             "try again."])  # fmt: skip
    request.session.pop(_review_key(token, command), None)
    done = linked(spec.done(data, states))
    if seen.replayed:
        messages.info(
            request, format_html("Already done: {} This form had been submitted before; nothing new was stored.", done)
        )
    else:
        messages.success(request, done)
        _tell_what_changed(request, account, data["expected_version"], states[0])
    return redirect(_fresh_form_address(reverse("accounts:detail", args=[account.id])))


# A form sent back to the account page, with its values and what went wrong: in the
# session (server-side), read once by the page the redirect lands on.
SENT_BACK = "sent_back_form"


def _kept(form, command: str) -> dict[str, str]:
    """What a command form sent, but the review step's buttons: to send it back, or to confirm it."""
    return {key: value for key, value in form.data.items()
            if key.startswith(f"{command}-") and key not in (f"{command}-confirmed", f"{command}-change")}  # fmt: skip


def _back_to_form(request, account, command: str, form, problem: Parts = ()):
    request.session[SENT_BACK] = {"account": str(account.id), "command": command, "data": _kept(form, command),
                                  "problem": for_the_session(problem)}  # fmt: skip
    token = _token_of(form.data.get(f"{command}-idempotency_key", ""))
    # No #fragment: a page opened at one ignores autofocus, which scrolls to the form anyway.
    return redirect(f"{reverse('accounts:detail', args=[account.id])}?{FORM_TOKEN}={token}")


def _sent_back(request, account) -> dict:
    """The form the last command sent back to this account's page, bound again, with its problem
    at its top and the focus on its first invalid field (or its first field, after Change)."""
    sent = request.session.pop(SENT_BACK, None)
    if not sent or sent.get("account") != str(account.id):
        return {}
    name = sent["command"]
    if name not in OFFERED[account.status]:  # the account's status refused it: no such form now
        if sent["problem"]:
            messages.error(request, from_the_session(sent["problem"]))
        return {}
    return {name: _with_focus(COMMANDS[name].form(sent["data"], account=account, prefix=name), sent["problem"])}


def _with_focus(form, problem: list):
    """A form sent back, bound again: its problem at its top, the focus on its first invalid field
    (or its first field, after Change)."""
    form.is_valid()
    if problem:
        form.add_error(None, from_the_session(problem))
    first = next((field for field in form.visible_fields() if field.errors), None) or form.visible_fields()[0]
    form.fields[first.name].widget.attrs["autofocus"] = True
    return form


def _review_key(token: str, command: str) -> str:
    return f"review:{token}:{command}"


@require_GET
@one_command_on_one_account
def review(request, spec, account, command):
    """The review step: what a command would do, decided on the account as it is now; nothing stored.

    A page of its own (the form's values in the session, under the page's token), so that
    reloading it, or coming Back to it after confirming, posts nothing: its Confirm sends
    the same idempotency key again, which stores nothing a second time.
    """
    token = _form_token(request)
    kept = request.session.get(_review_key(token, command)) if token else None
    if kept is None:
        messages.error(
            request, f"{spec.label}: there is nothing to review (the page is out of date). Nothing was done."
        )
        return redirect(_fresh_form_address(reverse("accounts:detail", args=[account.id])))
    form = spec.form(kept, account=account, prefix=command)
    if not form.is_valid():
        return _back_to_form(request, account, command, form, [CORRECT_THE_FIELDS])
    try:
        what = preview(spec, account, form.cleaned_data)
    except DomainError as error:
        return _back_to_form(request, account, command, form, refusal(spec.label, error))
    return render(request, "accounts/review.html", {
        "name": command, "spec": spec, "form": form, "preview": what, "kept": sorted(kept.items()), "current": account,
    })  # fmt: skip


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
    latest = selectors.latest_events()
    return render(
        request,
        "accounts/dashboard.html",
        {
            "figures": selectors.bank_figures(),
            "latest": latest,
            "accounts": selectors.accounts_by_id(e.aggregate_id for e in latest),
            "integrity": selectors.integrity_status(),
        },
    )


@require_GET
@staff_permission("accounts.view_account")
def account_list(request):
    form = AccountSearchForm(request.GET)
    if not form.is_valid():
        typed = {"query": form.data.get("q", ""), "status": form.data.get("status", ""),
                 "currency": form.data.get("currency", "")}  # fmt: skip
        return render(request, "accounts/account_list.html", _list_choices(form, typed))
    data = form.cleaned_data
    filters = {"query": data["q"], "status": data["status"], "currency": data["currency"]}
    results = selectors.search_accounts(**filters, after=data["after"])
    # A count only where it is cheap: the rows of a list that fits one page; else the planner's estimate.
    exact = data["after"] is None and not results.has_next
    return render(request, "accounts/account_list.html", _list_choices(form, {
        **filters, "page": results, "paged": data["after"] is not None,
        "count": len(results.items) if exact else selectors.estimated_accounts(**filters), "estimated": not exact,
    }))  # fmt: skip


def _list_choices(form, context):
    return {"form": form, "statuses": STATUSES, "currencies": sorted(CURRENCIES), **context}


@require_GET
@staff_permission("accounts.view_account")
def account_detail(request, account_id):
    token = _form_token(request)
    if token is None and not (request.GET.get("as_of") or request.GET.get("version")):
        return redirect(_fresh_form_address(request.path, request.GET))
    return _account_page(request, account_id, token=token or str(uuid.uuid4()))


def _waiting(account: BankAccount) -> list[tuple[Any, int | None]]:
    """The requests still waiting for a second person that would act on the account, each with the
    balance it would leave if approved now (None: it moves no money)."""
    waiting = []
    for row in selectors.waiting_on(account.id, now=timezone.now()):
        moved = None if row.amount is None else (row.amount if row.recipient_id == account.id else -row.amount)
        waiting.append((row, None if moved is None else account.balance + moved))
    return waiting


def _account_page(request, account_id, *, token: str):
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
    rows = []
    if account and history and history.items:
        top = history.items[0].version  # the balance after it: the account's, or (an older page) a load at it
        shown = account if top == account.version else services.get_account(current.id, version=top)
        rows = selectors.with_balances(history.items, shown.balance if shown else 0)
    month_form = MonthForm(request.GET)
    month = month_form.cleaned_data["month"] if month_form.is_valid() else None
    if month is None:  # the month on show: the past view's, or this one; the picker then shows it
        month = rows[0][0].created_at.date().replace(day=1) if past and rows else this_month()
        if not request.GET.get("month"):  # nothing typed (a mistyped month keeps its error)
            month_form = MonthForm({"month": f"{month:%Y-%m}"})
            month_form.is_valid()
    forms, done = (
        ({}, {}) if past or problem else _forms_for(request.user, current, token, _sent_back(request, current))
    )
    return render(
        request,
        "accounts/account_detail.html",
        {
            "statement": selectors.month_statement(current.id, month),
            "statement_lines": selectors.month_events(current.id, month, up_to_version=account.version)
            if account
            else None,
            "month_form": month_form,
            "account": account,
            "current": current,
            "problem": problem,
            "past": past,
            "picker": picker,
            "history": history,
            "rows": rows,
            "others": selectors.counterparties(history.items) if history else {},
            "chart": balance_chart(selectors.balance_points(account)) if account else None,
            "forms": forms,
            "done": done,
            "commands": COMMANDS,
            "reviewed": [name for name, command in COMMANDS.items() if command.always_reviewed],
            "status_note": None if past else selectors.status_note(current),
            "waiting": [] if past else _waiting(current),
        },
    )


@require_http_methods(["GET", "POST"])
@staff_permission("accounts.open_account")
def open_account(request):
    """The opening form. A refused or invalid one comes back to this page's address by a redirect
    (F5 posts nothing), with its values, an error summary and the focus on the first wrong field."""
    if request.method == "GET":
        token = _form_token(request)
        if token is None:
            return redirect(_fresh_form_address(request.path))
        opened = services.already_done([token]).get(token)
        sent = request.session.pop(SENT_BACK_OPENING, None)
        if opened:
            form = None
        elif sent and sent.get("token") == token:
            form = _with_focus(OpenAccountForm(sent["data"]), sent["problem"])
        else:
            form = OpenAccountForm(initial={"idempotency_key": token})
        return render(request, "accounts/open_account.html", {"form": form, "opened": opened and opened[0]})
    form = OpenAccountForm(request.POST)
    problem: Parts = [CORRECT_THE_FIELDS]
    if form.is_valid():
        data = form.cleaned_data
        try:
            with services.outcome() as seen:
                account = services.open_account(
                    owner=data["owner"], initial_deposit=data["initial_deposit"], currency=data["currency"],
                    idempotency_key=data["idempotency_key"],
                )  # fmt: skip
        except DomainError as error:
            problem = ["The account was not opened: ", *error.parts, " Nothing was done."]
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
    token = _token_of(form.data.get("idempotency_key", ""))
    kept = {key: form.data.get(key, "") for key in ("owner", "currency", "initial_deposit")}
    request.session[SENT_BACK_OPENING] = {"token": token, "data": kept | {"idempotency_key": token},
                                          "problem": for_the_session(problem)}  # fmt: skip
    return redirect(f"{request.path}?{FORM_TOKEN}={token}")


SENT_BACK_OPENING = "sent_back_opening"


def this_month():
    return timezone.now().date().replace(day=1)


# --- audit log ---------------------------------------------------------------------------


def audit_filters(request):
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
    form, filters = audit_filters(request)
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
            "actors": selectors.staff_names(),
        },
    )
