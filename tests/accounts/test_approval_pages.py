"""The approvals pages: a teller asks, a supervisor who is not the maker approves or rejects, the maker
cancels; the account page shows what waits; nobody decides a request by a crafted POST or in the admin."""

import html
import re
import uuid

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts import selectors, services
from accounts.approvals import APPROVED, CANCELLED, PENDING, REJECTED, ApprovalPending
from accounts.models import Approval
from eventstore.context import metadata_context
from eventstore.store import EventStore
from tests.factories import AccountFactory, UserFactory

pytestmark = pytest.mark.django_db

LARGE = "20,000.00"
REQUEST_LINK = re.compile(r'href="/approvals/[0-9a-f-]{36}/"')


def logged_in(username, role, **extra):
    client = Client()
    client.force_login(UserFactory(username=username, role=role, **extra))
    return client


def ask_to_withdraw(client, account, amount=LARGE):
    """A withdrawal through the account page's form, confirmed at the review step."""
    key = str(uuid.uuid4())
    data = {"withdraw-amount": amount, "withdraw-reason": "new car", "withdraw-idempotency_key": key,
            "withdraw-expected_version": account.version, "withdraw-confirmed": "1"}  # fmt: skip
    return client.post(reverse("accounts:command", args=[account.id, "withdraw"]), data, follow=True)


def decide(client, request_id, action, **fields):
    data = {f"{action}-idempotency_key": str(uuid.uuid4())} | {f"{action}-{k}": v for k, v in fields.items()}
    return client.post(reverse("accounts:approval_command", args=[request_id, action]), data, follow=True)


def text(response):
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode())))


def test_a_teller_asks_and_the_account_page_shows_what_waits_and_what_it_would_do():
    account = AccountFactory(owner="Zoë Holmes", initial_deposit=5_000_000)
    tina = logged_in("tina", "teller")
    page = ask_to_withdraw(tina, account)
    shown = text(page)
    assert "Withdrawal of 20,000.00 EUR from the account of Zoë Holmes is waiting for a second person" in shown
    assert "Waiting for a second person's approval" in shown and "would take the balance to 30,000.00 EUR" in shown
    assert "asked by tina (you)" in shown
    request = Approval.objects.get()
    assert f'href="{reverse("accounts:approval", args=[request.request_id])}"' in page.content.decode()
    assert services.get_account(account.id).balance == 5_000_000


def test_another_supervisor_sees_what_will_happen_and_approves():
    account = AccountFactory(owner="Zoë Holmes", initial_deposit=5_000_000)
    ask_to_withdraw(logged_in("tina", "teller"), account)
    request = Approval.objects.get()
    sam = logged_in("sam", "supervisor")
    page = text(sam.get(reverse("accounts:approval", args=[request.request_id])))
    assert "Waiting for a second person: nothing has moved yet." in page
    assert "20,000.00 EUR" in page and "50,000.00 EUR now → 30,000.00 EUR if approved" in page
    assert "Asked by tina" in page and "Approve" in page and "Reject" in page
    done = text(decide(sam, request.request_id, "approve"))
    assert "Approved: Withdrawal of 20,000.00 EUR has run." in done
    assert services.get_account(account.id).balance == 3_000_000
    last = EventStore().load(account.id)[-1]
    assert (last.metadata["maker"], last.metadata["checker"]) == ("tina", "sam")
    trail = sam.get(reverse("accounts:detail", args=[account.id]), follow=True).content.decode()
    assert (
        f'<a href="{reverse("accounts:approval", args=[request.request_id])}" class="muted">approved; asked by tina'
        in trail
    )
    assert Approval.objects.get().state == APPROVED


def test_the_maker_is_offered_no_approval_and_a_crafted_post_is_refused():
    account = AccountFactory(initial_deposit=5_000_000)
    sam = logged_in("sam", "supervisor")
    ask_to_withdraw(sam, account)
    request = Approval.objects.get()
    page = sam.get(reverse("accounts:approval", args=[request.request_id])).content.decode()
    assert "You asked for this: another member of staff must approve it." in page
    assert "/approve/" not in page and "/cancel/" in page
    refused = text(decide(sam, request.request_id, "approve"))
    assert "Approve refused: You asked for this command: another member of staff must approve it." in refused
    assert services.get_account(account.id).balance == 5_000_000 and Approval.objects.get().state == PENDING


def test_a_visitor_who_is_not_logged_in_is_sent_to_the_login_page():
    account = AccountFactory(initial_deposit=5_000_000)
    ask_to_withdraw(logged_in("tina", "teller"), account)
    request = Approval.objects.get()
    for url in (reverse("accounts:approval", args=[request.request_id]),
                reverse("accounts:approval_command", args=[request.request_id, "approve"])):  # fmt: skip
        response = Client().post(url) if url.endswith("/approve/") else Client().get(url)
        assert response.status_code == 302 and reverse("login") in response["Location"]
    assert Approval.objects.get().state == PENDING


@pytest.mark.parametrize("role", ["teller", "auditor"])
def test_only_a_supervisor_may_approve_or_reject(role):
    account = AccountFactory(initial_deposit=5_000_000)
    ask_to_withdraw(logged_in("tina", "teller"), account)
    request = Approval.objects.get()
    other = logged_in("someone", role)
    assert other.get(reverse("accounts:approval", args=[request.request_id])).status_code == 200
    for action in ("approve", "reject"):
        response = other.post(reverse("accounts:approval_command", args=[request.request_id, action]),
                              {f"{action}-idempotency_key": "k", f"{action}-reason": "x"})  # fmt: skip
        assert response.status_code == 403
    assert Approval.objects.get().state == PENDING


def test_a_checker_rejects_with_a_reason_and_a_reason_is_required():
    account = AccountFactory(initial_deposit=5_000_000)
    ask_to_withdraw(logged_in("tina", "teller"), account)
    request = Approval.objects.get()
    sam = logged_in("sam", "supervisor")
    assert "give a reason. Nothing was done." in text(decide(sam, request.request_id, "reject", reason=" "))
    assert "The request is rejected: nothing moved." in text(decide(sam, request.request_id, "reject", reason="no ID"))
    assert (Approval.objects.get().state, Approval.objects.get().outcome) == (REJECTED, "no ID")


def test_the_maker_cancels_from_the_requests_page():
    account = AccountFactory(initial_deposit=5_000_000)
    tina = logged_in("tina", "teller")
    ask_to_withdraw(tina, account)
    request = Approval.objects.get()
    assert "The request is cancelled" in text(decide(tina, request.request_id, "cancel", reason="customer left"))
    assert Approval.objects.get().state == CANCELLED and services.get_account(account.id).balance == 5_000_000


def test_the_queue_puts_waiting_requests_first_oldest_first_and_filters(settings):
    first, second = AccountFactory(initial_deposit=5_000_000), AccountFactory(initial_deposit=5_000_000)
    tina = logged_in("tina", "teller")
    ask_to_withdraw(tina, first)
    ask_to_withdraw(tina, second)
    older, newer = Approval.objects.order_by("requested_at")
    with metadata_context(actor="sam"):
        services.reject(request_id=older.request_id, reason="no")
    ask_to_withdraw(logged_in("ann", "teller"), first, amount="15,000.00")
    sam = logged_in("sam", "supervisor")
    queue = sam.get(reverse("accounts:approvals")).content.decode()
    order = [queue.index(str(r.request_id)) for r in Approval.objects.order_by("requested_at")]
    assert order[1] < order[2] < order[0]  # waiting first (oldest first), then the decided
    mine = sam.get(reverse("accounts:approvals"), {"maker": "ann"}).content.decode()
    assert len(REQUEST_LINK.findall(mine)) == 1
    of_first = sam.get(reverse("accounts:approvals"), {"account": str(first.id), "state": PENDING}).content.decode()
    assert len(REQUEST_LINK.findall(of_first)) == 1


def test_a_request_past_its_time_shows_expired_and_offers_nothing(settings):
    settings.APPROVAL_EXPIRES_AFTER_HOURS = 0
    account = AccountFactory(initial_deposit=5_000_000)
    ask_to_withdraw(logged_in("tina", "teller"), account)
    request = Approval.objects.get()
    sam = logged_in("sam", "supervisor")
    page = text(sam.get(reverse("accounts:approval", args=[request.request_id])))
    assert "The request is expired." in page and "Approve" not in page
    assert "expired" in text(sam.get(reverse("accounts:approvals"), {"state": "expired"}))
    assert Approval.objects.get().state == PENDING  # a read never writes


def test_the_audit_log_finds_an_approved_event_by_its_maker_and_by_its_checker():
    account = AccountFactory(initial_deposit=5_000_000)
    ask_to_withdraw(logged_in("tina", "teller"), account)
    sam = logged_in("sam", "supervisor")
    decide(sam, Approval.objects.get().request_id, "approve")
    for who in ("tina", "sam"):
        found = sam.get(reverse("accounts:audit"), {"actor": who, "event_type": "Withdrawn"}).content.decode()
        assert "new car" in found, who


def test_the_admin_shows_requests_read_only_and_an_unfreeze_from_it_waits_for_approval():
    account = AccountFactory(frozen=True)
    admin = logged_in("sam", "supervisor", is_staff=True)
    response = admin.post(reverse("admin:accounts_account_changelist"), {
        "action": "unfreeze_accounts", "_selected_action": [str(account.id)], "reason": "cleared", "confirm": "1",
    }, follow=True)  # fmt: skip
    assert "is waiting for a second person's approval" in text(response)
    assert services.get_account(account.id).status == "frozen"
    request = Approval.objects.get()
    listed = admin.get(reverse("admin:accounts_approval_changelist")).content.decode()
    assert "Unfreeze" in listed or "unfreeze" in listed
    change = admin.get(reverse("admin:accounts_approval_change", args=[request.request_id])).content.decode()
    assert 'name="_save"' not in change and "Approve" not in change  # nothing to change, nothing to decide
    assert admin.post(reverse("admin:accounts_approval_change", args=[request.request_id]), {}).status_code == 403


def test_a_request_with_a_row_the_application_did_not_sign_is_shown_on_hold_and_cannot_be_approved(tamper):
    account = AccountFactory(initial_deposit=5_000_000)
    ask_to_withdraw(logged_in("tina", "teller"), account)
    request = Approval.objects.get()
    tamper(request.request_id, "Approved", {"checker": "mallory"}, aggregate_type="ApprovalRequest", signed=False)
    sam = logged_in("sam", "supervisor")
    page = sam.get(reverse("accounts:approval", args=[request.request_id]))
    assert page.status_code == 200 and "Integrity warning" in text(page) and "it is not signed" in text(page)
    assert "Approve refused" in text(decide(sam, request.request_id, "approve"))
    assert services.get_account(account.id).balance == 5_000_000


def test_the_queue_pages_by_keyset_those_waiting_first_without_a_request_twice_or_missed():
    account = AccountFactory(owner="Queued Customer", initial_deposit=50_000_000)
    with metadata_context(actor="tina"):
        asked = []
        for _ in range(5):
            try:
                services.withdraw(account_id=account.id, amount=2_000_000, reason="car")
            except ApprovalPending as pending:
                asked.append(pending.request.id)
    with metadata_context(actor="sam"):
        services.reject(request_id=asked[1], reason="no")
        services.reject(request_id=asked[3], reason="no")
    now, seen, after = timezone.now(), [], None
    while True:
        page = selectors.approvals(selectors.ApprovalFilters(account=account.id), now=now, after=after, size=2)
        seen += [row.request_id for row in page.items]
        if not page.has_next:
            break
        after = selectors.ApprovalCursor.parse(page.next_cursor)
    assert seen == [asked[0], asked[2], asked[4], asked[1], asked[3]]  # waiting first, each group oldest first


def test_a_queue_link_not_of_ours_says_so_and_never_fails():
    client = logged_in("sam", "supervisor")
    for forged in ("2_2026-01-01T00:00:00+00:00_" + str(uuid.uuid4()), "0_yesterday_x", "0_2026-01-01T00:00:00_1"):
        response = client.get(reverse("accounts:approvals"), {"after": forged})
        assert response.status_code == 200 and "not one the list made" in response.content.decode()
