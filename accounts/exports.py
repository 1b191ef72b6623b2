"""Exports: the audit log and an account's month as CSV, streamed.

Every text cell is kept from running as a spreadsheet formula; money is a signed
decimal beside its currency; accounts are named by their owners.

A long export reads its rows a chunk at a time, each chunk a short query that
continues from the last row by its key. On a replica, a chunk that fails (the
replica stopped, or cancelled the query to replay a conflicting change) is read
again from the primary, and the rest of the file with it.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
from functools import wraps

from django.contrib import messages
from django.db import DatabaseError
from django.http import Http404, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from accounts import selectors, services
from accounts.domain import counterparty, label, money_effect, stated_reason
from accounts.forms import MonthForm
from accounts.money import to_decimal_string as _decimal
from accounts.views import audit_filters, staff_permission, this_month
from eventstore import replicas

logger = logging.getLogger(__name__)


class _Echo:
    def write(self, value):
        return value


CSV_COLUMNS = [
    "id", "created_at", "aggregate_id", "owner", "version", "event_type", "amount", "currency",
    "counterparty", "counterparty_owner", "actor", "correlation_id", "data", "metadata",
]  # fmt: skip


CSV_CHUNK = 2000  # rows per fetch


def _chunks(events, *, key: str, reads: replicas.LaterReads):
    """`events` CSV_CHUNK at a time, each with the accounts its rows name, by keyset on `key`
    ("-id" or "version", the order of `events`), read by `reads` (made in the view: the file is
    read after the view has returned)."""
    field, after = key.lstrip("-"), None
    beyond = f"{field}__lt" if key.startswith("-") else f"{field}__gt"
    while True:

        def read(after=after):
            chunk = list((events if after is None else events.filter(**{beyond: after}))[:CSV_CHUNK])
            return chunk, selectors.accounts_by_id(e.aggregate_id for e in chunk) | selectors.counterparties(chunk)

        chunk, named = reads(read)
        if chunk:
            yield chunk, named
        if len(chunk) < CSV_CHUNK:
            return
        after = getattr(chunk[-1], field)


def month_of_an_account(view):
    """For the exports of an account's month: the account as its history can be read (404 if none)
    and the month asked for (this one if none; a 400 saying why for one that is not a month)."""

    @require_GET
    @staff_permission("accounts.view_account")
    @wraps(view)
    def wrapped(request, account_id):
        account, _ = services.last_readable(account_id)
        if account is None:
            raise Http404("No such account.")
        month, refused = _month(request)
        return refused if refused is not None else view(request, account, month)

    return wrapped


@month_of_an_account
def statement_csv(request, account, month):
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


def _month(request):
    """The month an export asks for (this one if none), or the refusal of one that is not a month."""
    form = MonthForm(request.GET)
    if not form.is_valid():
        return None, HttpResponseBadRequest(
            # An ErrorList yields its messages as text (the stubs allow ValidationErrors too).
            " ".join(map(str, form.errors["month"])) + " Nothing was exported.",
            content_type="text/plain; charset=utf-8",
        )
    return form.cleaned_data["month"] or this_month(), None


TRANSACTION_COLUMNS = [
    "created_at", "version", "event", "amount", "currency", "balance_after", "why", "counterparty",
    "counterparty_owner", "actor",
]  # fmt: skip


@month_of_an_account
def transactions_csv(request, account, month):
    """An account's month, one line per event with the balance after it: the statement's transactions."""
    before, events = selectors.month_lines(account.id, month, up_to_version=account.version)
    opening = services.get_account(account.id, version=before) if before else None
    currency, balance = account.currency, opening.balance if opening else 0

    def line(writer, event, others) -> str:
        nonlocal balance
        effect, other = _effect(event), counterparty(event.event_type, event.data)
        balance += effect
        return writer.writerow([
            event.created_at.isoformat(), event.version, _csv_safe(label(event.event_type)),
            _decimal(effect, currency) if effect else "", currency, _decimal(balance, currency),
            _csv_safe(stated_reason(event.data, event.metadata)), other or "",
            _csv_safe(others[other].owner if other in others else ""),
            _csv_safe((event.metadata or {}).get("actor", "")),
        ])  # fmt: skip

    return _streamed(
        request, _chunks(events, key="version", reads=replicas.LaterReads()), TRANSACTION_COLUMNS, line,
        filename=f"transactions-{account.id}-{month:%Y-%m}.csv", whole="month",
        back=(reverse("accounts:detail", args=[account.id]), "Back to the account"),
    )  # fmt: skip


def _streamed(request, chunks, header, line, *, filename: str, whole: str, back: tuple[str, str]):
    """A CSV of `header`, then `line(writer, event, named)` for every event of `chunks`, streamed.

    The first rows are read before the response starts, so a failure there is an
    error page, not an empty file that looks like "nothing happened". A failure once
    rows have gone out ends the file with a line saying it is incomplete.
    """
    try:
        first = list(itertools.islice(chunks, 1))
    except DatabaseError:
        logger.exception("%s failed before its first row", filename)
        return render(request, "accounts/export_failed.html", {"back": back}, status=503)
    writer = csv.writer(_Echo())

    def rows():
        yield writer.writerow(header)
        written = 0
        try:
            for chunk, named in itertools.chain(first, chunks):
                for event in chunk:
                    yield line(writer, event, named)
                    written += 1
        except DatabaseError:
            logger.exception("%s failed after %d rows", filename, written)
            yield writer.writerow([f"# INCOMPLETE EXPORT: the database failed after {written} rows; "
                                   f"this file is not the whole {whole}. Export again."])  # fmt: skip

    return StreamingHttpResponse(
        rows(),
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _effect(event) -> int:
    """What the event did to the balance, 0 for an unreadable one (the page's integrity warning says so)."""
    try:
        return money_effect(event.event_type, event.data)
    except (KeyError, TypeError, ValueError):
        return 0


@require_GET
@staff_permission("eventstore.view_event")
def audit_log_csv(request):
    """Stream every filtered event as CSV, a chunk at a time: memory stays flat."""
    form, filters = audit_filters(request)
    back = f"{reverse('accounts:audit')}?{request.GET.urlencode()}"
    if filters is None:
        messages.error(request, "The filters are not valid; nothing was exported.")
        return redirect(back)
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    return _streamed(
        request, _chunks(selectors.audit_events(filters), key="-id", reads=replicas.LaterReads()), CSV_COLUMNS,
        _audit_row, filename=f"audit-log-{stamp}.csv", whole="log", back=(back, "Back to the audit log"),
    )  # fmt: skip


def _audit_row(writer, event, named) -> str:
    """One event as a CSV line: its money as a signed decimal in its currency, its accounts by owner,
    every text cell kept from running as a formula."""
    metadata, account = event.metadata or {}, named.get(event.aggregate_id)
    currency = account.currency if account else ""
    effect = _effect(event)  # 0 for an unreadable one: the raw data column still has it
    other = counterparty(event.event_type, event.data) if isinstance(event.data, dict) else None
    return writer.writerow([
        event.id, event.created_at.isoformat(), event.aggregate_id, _csv_safe(account.owner if account else ""),
        event.version, _csv_safe(event.event_type), _decimal(effect, currency) if effect and currency else "",
        currency, other or "", _csv_safe(named[other].owner if other in named else ""),
        _csv_safe(metadata.get("actor", "")), _csv_safe(metadata.get("correlation_id", "")),
        _csv_safe(json.dumps(event.data, sort_keys=True)), _csv_safe(json.dumps(metadata, sort_keys=True)),
    ])  # fmt: skip


def _csv_safe(value) -> str:
    """Keep spreadsheet programs from running a cell that starts like a formula."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
