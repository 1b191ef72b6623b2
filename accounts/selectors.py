"""Read queries for the pages: read models for lists, the event log for history.

Nothing here counts a whole table: lists fetch one row more than a page to know
whether another page follows, and long lists page by keyset (an id or version to
continue before), so the thousandth page costs what the first does.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Generic, TypeVar

from django.contrib.auth.models import Group, User
from django.db import connections
from django.db.models import BooleanField, Case, Count, Func, Q, QuerySet, TextField, Value, When
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast

from accounts.approvals import EXPIRED, PENDING
from accounts.domain import ACTIVE, CLOSED, FROZEN, STATUSES, BankAccount, counterparty, money_effect
from accounts.models import Account, Approval, BankTotal, DailyStatement
from eventstore.models import Event, IntegrityFinding, IntegrityRun, ProjectionCheckpoint, QuarantinedEvent
from eventstore.projections import position_of
from eventstore.store import START, EventStore, backlog

PAGE_SIZE = 25
CHART_EVENTS = 200


T = TypeVar("T")


@dataclass
class Page(Generic[T]):
    items: list[T]
    has_next: bool
    next_cursor: int | str | None = None  # the version, event id or row to continue after


def _page(rows: list[T], size: int, cursor_of: Callable[[T], int | str]) -> Page[T]:
    has_next = len(rows) > size
    rows = rows[:size]
    return Page(rows, has_next, cursor_of(rows[-1]) if has_next and rows else None)


def estimated_count(rows: QuerySet[Any]) -> int:
    """How many rows the planner expects `rows` to hold: what a list shows, labelled as an estimate,
    where counting them would cost a scan."""
    statement, params = rows.order_by().query.sql_with_params()
    with connections[rows.db].cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {statement}", params)
        plan = cursor.fetchone()[0]
    return int((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]["Plan Rows"])


# --- dashboard --------------------------------------------------------------------


@dataclass
class IntegrityStatus:
    """What the last verify_event_store run found, for the dashboard."""

    run: IntegrityRun | None
    held: list[tuple[uuid.UUID, str, int]]  # (account, owner, findings) of the accounts findings name
    findings: list[IntegrityFinding]  # the first few, for the card


def integrity_status(*, shown: int = 10) -> IntegrityStatus:
    run = IntegrityRun.objects.order_by("-id").first()
    if run is None or not run.findings:
        return IntegrityStatus(run, [], [])
    named = list(
        IntegrityFinding.objects.filter(run=run, aggregate_id__isnull=False)
        .values_list("aggregate_id")
        .annotate(n=Count("id"))
        .order_by("-n")[:shown]
    )
    owners = accounts_by_id(account_id for account_id, _ in named)
    held = [(account_id, getattr(owners.get(account_id), "owner", ""), n) for account_id, n in named]
    return IntegrityStatus(run, held, list(IntegrityFinding.objects.filter(run=run).order_by("id")[:shown]))


@dataclass
class CurrencyTotal:
    currency: str
    accounts: int
    balance: Decimal  # every account's balance, in minor units
    frozen: Decimal  # of which in frozen accounts


@dataclass
class BankFigures:
    """The dashboard's figures, from the totals projection: a handful of rows, however large the bank."""

    counts: dict[str, int]  # accounts per status, every status named
    currencies: list[CurrencyTotal]
    behind: int  # events not counted yet (the runner catches up), at most FIGURES_BEHIND_COUNTED + 1
    since: datetime | None  # when the oldest of them was written


FIGURES_BEHIND_COUNTED = 1000  # past this, the dashboard says "more than"


def bank_figures() -> BankFigures:
    counts = dict.fromkeys(STATUSES, 0)
    currencies: dict[str, CurrencyTotal] = {}
    for row in BankTotal.objects.order_by("currency", "status"):
        counts[row.status] = counts.get(row.status, 0) + row.accounts
        total = currencies.setdefault(row.currency, CurrencyTotal(row.currency, 0, Decimal(0), Decimal(0)))
        total.accounts += row.accounts
        total.balance += row.balance
        if row.status == FROZEN:
            total.frozen += row.balance
    checkpoint = ProjectionCheckpoint.objects.filter(name="bank_totals").first()
    position = position_of(checkpoint) if checkpoint else START
    behind, since = backlog(position, limit=FIGURES_BEHIND_COUNTED + 1)
    return BankFigures(counts, list(currencies.values()), behind, since)


def accounts_by_id(account_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Account]:
    """Read-model rows for the accounts a list of events mentions (owner, currency)."""
    return {row.account_id: row for row in Account.objects.filter(account_id__in=set(account_ids))}


def latest_events(limit: int = 15) -> list[Event]:
    return list(Event.objects.order_by("-id")[:limit])


# --- accounts ---------------------------------------------------------------------


class Folded(Func):
    """A text folded as the search index holds it: lower case, accents removed (migration 0006)."""

    function = "public.accounts_folded"
    output_field = TextField()


ID_PREFIX = re.compile(r"[0-9a-f]{6}[0-9a-f-]{0,30}", re.IGNORECASE)  # how much of an id a search may start with
ID_MATCHES = 1000  # accounts a search that could be an id finds at most, by id and by name each


def matching(query: str) -> QuerySet[Account]:
    """Accounts whose owner's name holds every word of `query` (in any order, ignoring case and
    accents), or whose id starts with it (6 characters or more). Both are served by indexes."""
    words = query.split()[:8]
    if not words:
        return Account.objects.all()
    by_name = Q()
    for word in words:
        by_name &= Q(folded__contains=Func(Value(word), function="public.accounts_folded", output_field=TextField()))
    accounts = Account.objects.annotate(folded=Folded("owner"))
    text = query.strip().lower()
    if len(words) == 1 and ID_PREFIX.fullmatch(text):
        # Each on its own index: as one OR, the planner walks the whole list for a page of it.
        by_id = Account.objects.annotate(id_text=Cast("account_id", TextField())).filter(id_text__startswith=text)
        named = accounts.filter(by_name)
        found = [*by_id.values_list("account_id", flat=True)[:ID_MATCHES],
                 *named.values_list("account_id", flat=True)[:ID_MATCHES]]  # fmt: skip
        return accounts.filter(account_id__in=found)
    return accounts.filter(by_name)


@dataclass(frozen=True)
class AccountCursor:
    """Where a page of the account list ends: the list runs newest opened first, by (opened_at, account_id)."""

    opened_at: datetime
    account_id: uuid.UUID

    def __str__(self) -> str:
        return f"{self.opened_at.isoformat()}_{self.account_id}"

    @classmethod
    def of(cls, account: Account) -> str:
        return str(cls(account.opened_at, account.account_id))

    @classmethod
    def parse(cls, text: str) -> AccountCursor:
        """ValueError for anything a page link of ours would not hold."""
        moment, _, account_id = text.rpartition("_")
        return cls(_moment(moment), uuid.UUID(account_id))


def _moment(text: str) -> datetime:
    """A cursor's time, as isoformat wrote it (with its offset)."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("a cursor's time has its offset")
    return moment


def search_accounts(*, query: str = "", status: str = "", currency: str = "", after: AccountCursor | None = None,
                    size: int = PAGE_SIZE) -> Page[Account]:  # fmt: skip
    """One page of the accounts matching, newest opened first, after the page that ended at `after`:
    by keyset, so a deep page costs what the first does."""
    accounts = _listed(query, status, currency)
    if after is not None:
        # A row comparison, which the (…, opened_at, account_id) indexes serve as a range.
        accounts = accounts.filter(
            RawSQL("(opened_at, account_id) < (%s, %s)", [after.opened_at, after.account_id], BooleanField())
        )
    rows = accounts.order_by("-opened_at", "-account_id")
    return _page(list(rows[: size + 1]), size, AccountCursor.of)


def estimated_accounts(*, query: str = "", status: str = "", currency: str = "") -> int:
    """About how many accounts `search_accounts` would list, page after page (the planner's estimate)."""
    return estimated_count(_listed(query, status, currency))


def _listed(query: str, status: str, currency: str) -> QuerySet[Account]:
    accounts = matching(query)
    if status:
        accounts = accounts.filter(status=status)
    if currency:
        accounts = accounts.filter(currency=currency)
    return accounts


def recipients(query: str, *, currency: str, besides: uuid.UUID, limit: int = 10) -> list[Account]:
    """The active accounts of one currency a transfer could go to, for the transfer form's chooser."""
    accounts = matching(query).filter(status=ACTIVE, currency=currency).exclude(account_id=besides)
    return list(accounts.order_by("owner", "account_id")[:limit])


# --- one account ------------------------------------------------------------------


def account_history(account_id: uuid.UUID, *, up_to_version: int | None = None, before_version: int | None = None,
                    size: int = PAGE_SIZE) -> Page[Event]:  # fmt: skip
    """The account's events, newest first, one page before `before_version` (the quarantined ones left out)."""
    events = _replayed(account_id).order_by("-version")
    if up_to_version is not None:
        events = events.filter(version__lte=up_to_version)
    if before_version is not None:
        events = events.filter(version__lt=before_version)
    return _page(list(events[: size + 1]), size, lambda event: event.version)


def with_balances(events: list[Event], balance: int) -> list[tuple[Event, int]]:
    """A page of an account's events (newest first), each with the balance after it, worked back
    from `balance`, the balance after the first: no older state is loaded."""
    rows = []
    for event in events:
        rows.append((event, balance))
        try:
            balance -= money_effect(event.event_type, event.data)
        except (KeyError, TypeError, ValueError):  # unreadable: the page's integrity warning says so
            pass
    return rows


def counterparties(events: Iterable[Event]) -> dict[uuid.UUID, Account]:
    """The other accounts of the transfers among `events`, by id (for their owners' names)."""
    return accounts_by_id(filter(None, (counterparty(event.event_type, event.data) for event in events)))


@dataclass
class ChartPoint:
    version: int
    at: datetime
    balance: int
    event_type: str


def balance_points(account: BankAccount, *, limit: int = CHART_EVENTS) -> list[ChartPoint]:
    """The balance after each of the account's last `limit` events, up to its version.

    Worked backwards from the account's balance, so no older state is loaded:
    the chart costs one indexed range read whatever the length of the history.
    """
    events = list(
        _replayed(account.id)
        .filter(version__lte=account.version)
        .order_by("-version")
        .only("version", "created_at", "event_type", "event_data")[:limit]
    )
    balance, points = account.balance, []
    for event in events:
        points.append(ChartPoint(event.version, event.created_at, balance, event.event_type))
        balance -= money_effect(event.event_type, event.data)
    points.reverse()
    return points


def _replayed(account_id: uuid.UUID) -> QuerySet[Event]:
    """The account's events as replay reads them: without those the owner quarantined."""
    quarantined = QuarantinedEvent.objects.filter(aggregate_id=account_id).values("event_id")
    return Event.objects.filter(aggregate_id=account_id).exclude(id__in=quarantined)


@dataclass
class StatusNote:
    """Why an account is frozen or closed, for its banner: the event that made it so, and who may lift it."""

    event: Event
    lifted_by: list[str]  # the roles whose members may unfreeze it (none for a closed account)


def status_note(account: BankAccount) -> StatusNote | None:
    """For a frozen or closed account, the event that froze or closed it. Nothing happens to such
    an account but unfreezing or closing it, so that event is its last: one indexed row."""
    if account.status == ACTIVE or not account.exists:
        return None
    last = events_between(account.id, account.version - 1, account.version)
    if not last:
        return None
    lifted_by = [] if account.status == CLOSED else list(
        Group.objects.filter(permissions__codename="unfreeze_account", permissions__content_type__app_label="accounts")
        .order_by("name").values_list("name", flat=True)
    )  # fmt: skip
    return StatusNote(last[0], lifted_by)


def events_between(
    account_id: uuid.UUID, after_version: int, up_to_version: int, *, limit: int | None = None
) -> list[Event]:
    """The account's events after one version up to another, oldest first; at most `limit` of them."""
    events = _replayed(account_id).filter(version__gt=after_version, version__lte=up_to_version)
    return list(events.order_by("version")[:limit])


# --- audit log --------------------------------------------------------------------


@dataclass
class AuditFilters:
    event_type: str = ""
    actor: str = ""
    account: uuid.UUID | None = None
    correlation_id: str = ""
    since: datetime | None = None
    until: datetime | None = None


def staff_names(limit: int = 1000) -> list[str]:
    """The usernames of the staff, for the audit log's actor filter (events name their actor by it)."""
    return list(User.objects.order_by("username").values_list("username", flat=True)[:limit])


def audit_events(filters: AuditFilters) -> QuerySet[Event]:
    """Every event matching the filters, newest first (a queryset, for pages and CSV)."""
    events = Event.objects.order_by("-id")
    if filters.event_type:
        events = events.filter(event_type=filters.event_type)
    if filters.actor:  # who acted, or who asked for or approved what they did
        actor = filters.actor
        events = events.filter(
            Q(metadata__contains={"actor": actor})
            | Q(metadata__contains={"maker": actor})
            | Q(metadata__contains={"checker": actor})
        )
    if filters.account:
        events = events.filter(aggregate_id=filters.account)
    if filters.correlation_id:
        events = events.filter(metadata__contains={"correlation_id": filters.correlation_id})
    if filters.since:
        events = events.filter(created_at__gte=filters.since)
    if filters.until:
        events = events.filter(created_at__lte=filters.until)
    return events


def audit_page(filters: AuditFilters, *, before_id: int | None = None, size: int = PAGE_SIZE * 2) -> Page[Event]:
    events = audit_events(filters)
    if before_id is not None:
        events = events.filter(id__lt=before_id)
    return _page(list(events[: size + 1]), size, lambda event: event.id)


# --- statements -------------------------------------------------------------------


@dataclass
class Statement:
    month: date
    days: list[DailyStatement]
    opening_balance: int | None
    # Summed from the NUMERIC turnover columns: a whole Decimal, or 0 for a month without rows.
    credits: Decimal | int
    debits: Decimal | int
    closing_balance: int | None
    applied_at: datetime | None  # when the statement projection last applied events


# The statement card lists the month's first transactions; its CSV and the audit trail have them all.
# Fifty keep the account page light (each line is a row the template renders).
MONTH_EVENTS_SHOWN = 50


def month_events(account_id: uuid.UUID, month: date, *, up_to_version: int) -> Page[Event]:
    """The account's events in one calendar month (UTC) up to a version, oldest first: a statement's lines.
    Bounded by versions (the account's index), found from the month's first and last moments."""
    _, events = month_lines(account_id, month, up_to_version=up_to_version)
    return _page(list(events[: MONTH_EVENTS_SHOWN + 1]), MONTH_EVENTS_SHOWN, lambda e: e.version)


def month_lines(account_id: uuid.UUID, month: date, *, up_to_version: int) -> tuple[int, QuerySet[Event]]:
    """The version the account stood at before a calendar month (UTC), and the month's events up to a
    version, oldest first. Bounded by versions (the account's index), found from the month's first
    and last moments."""
    store = EventStore()
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    end = datetime(*(month.replace(day=28) + timedelta(days=4)).replace(day=1).timetuple()[:3], tzinfo=UTC)
    instant = timedelta(microseconds=1)
    before, last = store.version_at(account_id, start - instant), store.version_at(account_id, end - instant)
    events = _replayed(account_id).filter(version__gt=before, version__lte=min(last, up_to_version))
    return before, events.order_by("version")


def month_statement(account_id: uuid.UUID, month: date) -> Statement:
    """The account's daily statement rows for one calendar month (UTC), with totals."""
    following = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    days = list(DailyStatement.objects.filter(account_id=account_id, day__gte=month, day__lt=following).order_by("day"))
    checkpoint = ProjectionCheckpoint.objects.filter(name="daily_statements").first()
    return Statement(
        month=month,
        days=days,
        opening_balance=days[0].opening_balance if days else None,
        credits=sum(d.credits for d in days),
        debits=sum(d.debits for d in days),
        closing_balance=days[-1].closing_balance if days else None,
        applied_at=checkpoint.updated_at if checkpoint else None,
    )


# --- approval requests -------------------------------------------------------------


@dataclass
class ApprovalFilters:
    state: str = ""
    account: uuid.UUID | None = None
    maker: str = ""
    command: str = ""


def _shown_as(state: str, now: datetime) -> Q:
    """The rows the pages show in `state`: a pending request past its time shows as expired."""
    overdue = Q(state=PENDING, expires_at__lte=now)
    if state == PENDING:
        return Q(state=PENDING, expires_at__gt=now)
    if state == EXPIRED:
        return Q(state=EXPIRED) | overdue
    return Q(state=state)


@dataclass(frozen=True)
class ApprovalCursor:
    """Where a page of the approvals queue ends: those still waiting first, each group oldest first."""

    done: int  # 0 for a request still waiting, 1 for the others
    requested_at: datetime
    request_id: uuid.UUID

    def __str__(self) -> str:
        return f"{self.done}_{self.requested_at.isoformat()}_{self.request_id}"

    @classmethod
    def of(cls, row: Approval) -> str:
        """The cursor after `row`, as `approvals` annotates it (`done`)."""
        return str(cls(getattr(row, "done"), row.requested_at, row.request_id))  # noqa: B009  an annotation

    @classmethod
    def parse(cls, text: str) -> ApprovalCursor:
        """ValueError for anything a page link of ours would not hold."""
        done, moment, request_id = text.split("_")
        if done not in ("0", "1"):
            raise ValueError("a cursor's group is 0 or 1")
        return cls(int(done), _moment(moment), uuid.UUID(request_id))


def approvals(filters: ApprovalFilters, *, now: datetime, after: ApprovalCursor | None = None,
              size: int = PAGE_SIZE) -> Page[Approval]:  # fmt: skip
    """Approval requests, those still waiting first, each group oldest first; by keyset after `after`."""
    rows = Approval.objects.all()
    if filters.state:
        rows = rows.filter(_shown_as(filters.state, now))
    if filters.account:
        rows = rows.filter(Q(account_id=filters.account) | Q(recipient_id=filters.account))
    if filters.maker:
        rows = rows.filter(maker=filters.maker)
    if filters.command:
        rows = rows.filter(command=filters.command)
    rows = rows.annotate(done=Case(When(_shown_as(PENDING, now), then=Value(0)), default=Value(1)))
    if after is not None:
        rows = rows.filter(
            Q(done__gt=after.done)
            | Q(done=after.done, requested_at__gt=after.requested_at)
            | Q(done=after.done, requested_at=after.requested_at, request_id__gt=after.request_id)
        )
    ordered = rows.order_by("done", "requested_at", "request_id")
    return _page(list(ordered[: size + 1]), size, ApprovalCursor.of)


def waiting_on(account_id: uuid.UUID, *, now: datetime, limit: int = 20) -> list[Approval]:
    """The requests still waiting that would act on the account (as payer or recipient), oldest first."""
    rows = Approval.objects.filter(Q(account_id=account_id) | Q(recipient_id=account_id)).filter(
        _shown_as(PENDING, now)
    )
    return list(rows.order_by("requested_at")[:limit])


def makers(limit: int = 1000) -> list[str]:
    """Who asked for approvals, for the queue's filter."""
    return list(Approval.objects.order_by("maker").values_list("maker", flat=True).distinct()[:limit])
